"""The ``variant`` fixture: every registered model variant (and a few extra STViT settings) at a
narrow width, built by tests/helpers/models.py."""
import pytest

from tests.helpers.models import VARIANT_NAMES, variant_factory


@pytest.fixture(params=VARIANT_NAMES)
def variant(request):
    """(name, factory) of every registered variant and a few extra STViT settings, narrow."""
    return request.param, variant_factory(request.param)
