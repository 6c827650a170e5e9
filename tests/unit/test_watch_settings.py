"""The operator's Kopf settings: which watches the API server filters for it (issue 15)."""

from __future__ import annotations

import kopf

from vigil_operator.config import Config
from vigil_operator.handlers import OWNED, apply_settings

DEPLOYMENTS = kopf.Resource("apps", "v1", "deployments", kind="Deployment", preferred=True)
SERVICES = kopf.Resource("", "v1", "services", kind="Service", preferred=True)
MODEL_DEPLOYMENTS = kopf.Resource(
    "vigil.dev", "v1alpha1", "modeldeployments", kind="ModelDeployment", preferred=True
)
PODS = kopf.Resource("", "v1", "pods", kind="Pod", preferred=True)


def test_deployment_and_service_watches_carry_the_managed_by_label_selector() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, Config())
    # What Kopf joins into the watch request's `labelSelector` for each resource.
    assert settings.watching.label_selectors.collect(DEPLOYMENTS) == [OWNED]
    assert settings.watching.label_selectors.collect(SERVICES) == [OWNED]
    assert OWNED == "app.kubernetes.io/managed-by=vigil"


def test_model_deployments_and_other_kinds_are_not_narrowed() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, Config())
    assert settings.watching.label_selectors.collect(MODEL_DEPLOYMENTS) == []
    assert settings.watching.label_selectors.collect(PODS) == []


def test_kopfs_own_requests_get_the_api_timeout() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, Config(api_timeout_seconds=7.0))
    assert settings.networking.request_timeout == 7.0
