from soda_plugin.smollm2 import __doc__, main, make_parser  # noqa: F401  the converter, its parser and docs live there
if __name__ == "__main__": raise SystemExit(main(make_parser().parse_args()))  # noqa: E701
