"""Publishing a trained student to the Hub: model files, a model card, and the recipe bundle."""

from .bundle import BundleFile, plan_bundle
from .card import model_card
from .publish import publish

__all__ = ["BundleFile", "model_card", "plan_bundle", "publish"]
