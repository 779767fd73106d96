"""The test run turns openstacksdk's deprecation warnings into errors (pyproject.toml), except
the three its own code raises whatever the caller does."""

from __future__ import annotations

import warnings

import pytest
from openstack.warnings import (
    OpenStackDeprecationWarning,
    RemovedInSDK50Warning,
    RemovedInSDK60Warning,
)


@pytest.mark.parametrize("category", [RemovedInSDK50Warning, RemovedInSDK60Warning,
                                      OpenStackDeprecationWarning])
def test_an_openstack_deprecation_from_our_code_fails_the_run(category) -> None:
    with pytest.raises(category):
        warnings.warn("The ignore_missing parameter of all find_* proxy methods is deprecated",
                      category, stacklevel=1)


@pytest.mark.parametrize("message,category,module", [
    ("The 'service_type' parameter is unnecesary and will be removed in a future release.",
     RemovedInSDK50Warning, "openstack.proxy"),
    ("The _compute_attributes method is deprecated for removal", RemovedInSDK50Warning,
     "openstack.resource"),
    ("Support for InfluxDB requires the influxdb library which only supports InfluxDB 1.x",
     RemovedInSDK60Warning, "openstack.config.cloud_region"),
])
def test_the_sdks_own_warnings_are_ignored_only_from_their_module(message, category,
                                                                  module) -> None:
    warnings.warn_explicit(message, category, "sdk.py", 1, module=module)  # ignored
    with pytest.raises(category):  # the same text from anywhere else is not
        warnings.warn_explicit(message, category, "ours.py", 1, module="sage_image.publish")
