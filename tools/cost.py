from soda_plugin.cli.cost import __doc__, main, make_parser  # noqa: F401  `soda cost`: its parser and docs live there
if __name__ == "__main__": raise SystemExit(main(make_parser().parse_args()))  # noqa: E701
