"""spec.podTemplate (vigil_operator.pod_template): parsing, and how it merges into the Deployment.

The precedence is tested field by field (what the operator needs always wins), then as
properties over generated templates: whatever a podTemplate says, the operator's part of the pod
is the one it builds without it, and an empty podTemplate changes nothing (no pod rolls).
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.scenario import V1
from unit.test_builders import OWNER, RELEASE, SPEC, container, golden

from vigil_operator import constants as c
from vigil_operator.builders import candidate_deployment_for, deployment_for, spec_hash
from vigil_operator.pod_template import (
    OPERATOR_MOUNT_PATHS,
    OPERATOR_VOLUMES,
    OWNED_LABELS,
    RESERVED_ENV,
    InvalidPodTemplate,
    PodTemplate,
    init_container,
    parse_pod_template,
)
from vigil_operator.releases import InvalidSpec, parse_spec

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "modeldeployment.yaml"

FULL = {
    "metadata": {"labels": {"team": "fraud"}, "annotations": {"example.com/owner": "ml"}},
    "spec": {
        "env": [
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
        "volumes": [{"name": "models", "emptyDir": {"sizeLimit": "1Gi"}}],
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "initContainers": [
            {
                "name": "fetch",
                "image": "registry.example.com/fetch:1",
                "args": ["s3://models/iris/v2/model.joblib", "/models/model.joblib"],
                "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                "securityContext": {"runAsUser": 1000},
            }
        ],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "serviceAccountName": "iris-s3",
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "priorityClassName": "model-serving",
    },
}


def spec_with(template: Any, **changes: Any) -> Any:
    return replace(SPEC, pod_template=parse_pod_template(template), **changes)


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def built(template: Any = None, **changes: Any) -> dict[str, Any]:
    return deployment_for(OWNER, spec_with(template, **changes), RELEASE)


# --- the golden file -------------------------------------------------------------------------


def test_a_deployment_with_every_pod_template_field_matches_the_golden_file() -> None:
    golden("deployment-pod-template.yaml", "deployment_for", built(FULL, resources={}))


# --- parsing ---------------------------------------------------------------------------------


def test_no_pod_template_and_an_empty_one_are_the_same() -> None:
    assert parse_pod_template(None) == PodTemplate()
    empty = {"metadata": {"labels": {}}, "spec": {"env": [], "volumes": [], "nodeSelector": {}}}
    assert parse_pod_template(empty) == PodTemplate()
    assert parse_pod_template({}) == PodTemplate()


def test_parse_spec_reads_the_pod_template() -> None:
    spec = parse_spec(
        {"version": "v1", "model": {"uri": "http://m/x.joblib"}, "podTemplate": FULL},
        default_image="img",
        default_prometheus_url="http://p:9090",
    )
    assert spec.pod_template == parse_pod_template(FULL)
    assert spec.pod_template.labels == {"team": "fraud"}
    assert set(spec.pod_template.container) == {"env", "envFrom", "volumeMounts", "resources"}
    assert spec.pod_template.resources == {"limits": {"nvidia.com/gpu": 1}}


def test_the_parsed_template_is_a_copy_so_the_spec_is_never_changed() -> None:
    raw = copy.deepcopy(FULL)
    deployment = deployment_for(OWNER, replace(SPEC, pod_template=parse_pod_template(raw)), RELEASE)
    pod(deployment)["tolerations"][0]["key"] = "changed"
    container(deployment)["env"][-1]["name"] = "CHANGED"
    assert raw == FULL


# (template, the field the refusal names). The CRD refuses each of these too (integration tests);
# the operator refuses them again for objects stored before the CRD had the rules.
REFUSED = [
    *[
        ({"spec": {"env": [{"name": name, "value": "x"}]}}, "spec.podTemplate.spec.env[0].name")
        for name in RESERVED_ENV
    ],
    *[
        ({"spec": {"volumes": [{"name": name, "emptyDir": {}}]}}, "spec.podTemplate.spec.volumes[0].name")
        for name in OPERATOR_VOLUMES
    ],
    *[
        (
            {"spec": {"volumeMounts": [{"name": name, "mountPath": "/x"}]}},
            "spec.podTemplate.spec.volumeMounts[0].name",
        )
        for name in OPERATOR_VOLUMES
    ],
    *[
        (
            {"spec": {"volumeMounts": [{"name": "data", "mountPath": path}]}},
            "spec.podTemplate.spec.volumeMounts[0].mountPath",
        )
        for path in (
            "/tmp",
            "/tmp/cache",
            "/var/run/vigil",
            "/var/run/vigil/feedback/x",
            "/var/lib/vigil/pvc",
            "/var",
            "/",
            "/tmp/",
        )
    ],
    (
        {"spec": {"initContainers": [{"name": "model-server", "image": "x"}]}},
        "spec.podTemplate.spec.initContainers[0].name",
    ),
    (
        {
            "spec": {
                "initContainers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "tmp", "mountPath": "/x"}]}
                ]
            }
        },
        "spec.podTemplate.spec.initContainers[0].volumeMounts[0].name",
    ),
    *[
        (
            {"spec": {"initContainers": [{"name": "a", "image": "x", "securityContext": context}]}},
            f"spec.podTemplate.spec.initContainers[0].securityContext.{field}",
        )
        for context, field in (
            ({"privileged": True}, "privileged"),
            ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation"),
            ({"runAsNonRoot": False}, "runAsNonRoot"),
            ({"runAsUser": 0}, "runAsUser"),
            ({"capabilities": {"add": ["SYS_ADMIN"]}}, "capabilities.add"),
            ({"seccompProfile": {"type": "Unconfined"}}, "seccompProfile.type"),
        )
    ],
    *[
        ({"metadata": {"labels": {key: "x"}}}, "spec.podTemplate.metadata.labels")
        for key in (c.LABEL_MODEL, c.LABEL_VERSION, c.LABEL_CANDIDATE_OF, c.LABEL_TRACK, *OWNED_LABELS)
    ],
    ({"metadata": {"annotations": {c.ANNOTATION_RELEASE: "x"}}}, "spec.podTemplate.metadata.annotations"),
    ({"spec": {"containers": [{"name": "sidecar"}]}}, "spec.podTemplate.spec.containers"),
    ({"spec": {"hostNetwork": True}}, "spec.podTemplate.spec.hostNetwork"),
    ({"spec": {"securityContext": {"runAsUser": 0}}}, "spec.podTemplate.spec.securityContext"),
    ({"spec": {"env": "MODEL_URI=x"}}, "spec.podTemplate.spec.env"),
    ({"spec": {"env": [{"value": "x"}]}}, "spec.podTemplate.spec.env[0].name"),
    ({"metadata": {"labels": {"team": 1}}}, "spec.podTemplate.metadata.labels"),
    ("podTemplate", "spec.podTemplate"),
]


@pytest.mark.parametrize(("template", "field"), REFUSED, ids=lambda v: v if isinstance(v, str) else None)
def test_a_template_colliding_with_the_operator_is_refused_naming_the_field(
    template: Any, field: str
) -> None:
    with pytest.raises(InvalidPodTemplate) as refused:
        parse_pod_template(template)
    assert str(refused.value).startswith(field), str(refused.value)
    with pytest.raises(InvalidSpec, match=re.escape(field)):
        parse_spec(
            {"version": "v1", "model": {"uri": "http://m/x.joblib"}, "podTemplate": template},
            default_image="img",
            default_prometheus_url="http://p:9090",
        )


# --- the CRD and the code agree --------------------------------------------------------------


def _crd_pod_template() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "podTemplate"
    ]


def test_the_crd_refuses_the_names_and_paths_the_operator_refuses() -> None:
    spec = _crd_pod_template()["properties"]["spec"]["properties"]
    [env_rule] = spec["env"]["items"]["properties"]["name"]["x-kubernetes-validations"]
    assert re.findall(r"'([A-Z0-9_]+)'", env_rule["rule"]) == list(RESERVED_ENV)
    [volume_rule] = spec["volumes"]["items"]["properties"]["name"]["x-kubernetes-validations"]
    assert re.findall(r"'([a-z-]+)'", volume_rule["rule"]) == list(OPERATOR_VOLUMES)
    for mounts in (spec["volumeMounts"], spec["initContainers"]["items"]["properties"]["volumeMounts"]):
        [name_rule] = mounts["items"]["properties"]["name"]["x-kubernetes-validations"]
        assert re.findall(r"'([a-z-]+)'", name_rule["rule"]) == list(OPERATOR_VOLUMES)
        [path_rule] = mounts["items"]["properties"]["mountPath"]["x-kubernetes-validations"]
        assert re.findall(r"'(/[^']+)'", path_rule["rule"]) == list(OPERATOR_MOUNT_PATHS)
    [reserved, _syntax] = _crd_pod_template()["properties"]["metadata"]["properties"]["labels"][
        "x-kubernetes-validations"
    ]
    assert "'vigil.dev/'" in reserved["rule"]
    assert re.findall(r"'(app\.kubernetes\.io/[a-z-]+)'", reserved["rule"]) == list(OWNED_LABELS)


def test_every_variable_volume_and_mount_the_operator_sets_is_reserved() -> None:
    deployments = []
    for uri in (RELEASE.uri, "pvc://models/iris/v2/model.joblib"):
        running = replace(RELEASE, uri=uri)
        everything = replace(SPEC, release=running, allow_unpinned_pickle=True)
        deployments += [
            deployment_for(OWNER, everything, running, mirror_url="http://10.96.0.9:80"),
            candidate_deployment_for(
                OWNER, everything, running, stable_version="v1", replicas=1, in_service=True
            ),
        ]
    for deployment in deployments:
        assert {item["name"] for item in container(deployment)["env"]} <= set(RESERVED_ENV)
        assert {volume["name"] for volume in pod(deployment)["volumes"]} <= set(OPERATOR_VOLUMES)
        for mount in container(deployment)["volumeMounts"]:
            path = mount["mountPath"]
            assert any(path == p or path.startswith(p + "/") for p in OPERATOR_MOUNT_PATHS), path
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(key.startswith("vigil.dev/") or key in OWNED_LABELS for key in labels if key != "team")


# --- precedence, field by field --------------------------------------------------------------


def test_user_env_comes_after_the_operators_so_it_may_refer_to_it() -> None:
    env = container(built({"spec": {"env": [{"name": "GREETING", "value": "$(MODEL_NAME) says hi"}]}}))["env"]
    names = [item["name"] for item in env]
    assert names[-1] == "GREETING"
    assert names.index("MODEL_NAME") < names.index("GREETING")


@pytest.mark.parametrize("name", ["MODEL_URI", "MODEL_VERSION", "PORT", "MODEL_FEEDBACK_TOKEN_FILE"])
def test_the_operators_variable_wins_over_a_users_of_the_same_name(name: str) -> None:
    # Past parse_pod_template (the CRD and the parser refuse it): the merge still keeps the operator's.
    hostile = PodTemplate(container={"env": [{"name": name, "value": "hostile"}]})
    env = container(deployment_for(OWNER, replace(SPEC, pod_template=hostile), RELEASE))["env"]
    assert [item for item in env if item["name"] == name] == [
        item for item in container(built())["env"] if item["name"] == name
    ]


@pytest.mark.parametrize(
    "key",
    [c.LABEL_MODEL, c.LABEL_VERSION, c.LABEL_NAME, c.LABEL_INSTANCE, c.LABEL_COMPONENT, c.LABEL_MANAGED_BY],
)
def test_the_operators_labels_win_so_the_selector_always_selects_its_pods(key: str) -> None:
    hostile = PodTemplate(labels={key: "hostile", "team": "fraud"})
    for deployment in (
        deployment_for(OWNER, replace(SPEC, pod_template=hostile), RELEASE),
        candidate_deployment_for(
            OWNER,
            replace(SPEC, pod_template=hostile),
            RELEASE,
            stable_version="v1",
            replicas=1,
            in_service=True,
        ),
    ):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[key] != "hostile"
        assert labels["team"] == "fraud"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_operators_annotations_win() -> None:
    hostile = PodTemplate(annotations={c.ANNOTATION_RELEASE: "hostile", "prometheus.io/port": "1"})
    deployment = deployment_for(OWNER, replace(SPEC, pod_template=hostile), RELEASE, scrape_annotations=True)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_RELEASE] != "hostile"
    assert annotations["prometheus.io/port"] == str(c.SERVER_PORT)


def test_pod_template_labels_and_annotations_join_the_older_pod_labels() -> None:
    metadata = built({"metadata": {"labels": {"tier": "gold"}, "annotations": {"b": "2"}}})["spec"][
        "template"
    ]["metadata"]
    assert metadata["labels"]["team"] == "fraud"  # spec.podLabels
    assert metadata["labels"]["tier"] == "gold"
    assert metadata["annotations"]["example.com/owner"] == "ml-platform"  # spec.podAnnotations
    assert metadata["annotations"]["b"] == "2"


@pytest.mark.parametrize(
    ("template_resources", "spec_resources", "default", "expected"),
    [
        (
            {"limits": {"cpu": "2"}},
            {"limits": {"cpu": "1"}},
            {"limits": {"cpu": "3"}},
            {"limits": {"cpu": "2"}},
        ),
        ({}, {"limits": {"cpu": "1"}}, {"limits": {"cpu": "3"}}, {"limits": {"cpu": "1"}}),
        ({}, {}, {"limits": {"cpu": "3"}}, {"limits": {"cpu": "3"}}),
        ({}, {}, None, None),
    ],
)
def test_resources_come_from_the_pod_template_then_the_spec_then_the_operators_default(
    template_resources: dict[str, Any], spec_resources: dict[str, Any], default: Any, expected: Any
) -> None:
    spec = spec_with({"spec": {"resources": template_resources}}, resources=spec_resources)
    assert (
        container(deployment_for(OWNER, spec, RELEASE, default_resources=default)).get("resources")
        == expected
    )


def test_the_operators_volumes_and_mounts_win_by_name_and_path() -> None:
    hostile = PodTemplate(
        container={
            "volumeMounts": [{"name": "tmp", "mountPath": "/x"}, {"name": "data", "mountPath": "/tmp"}]
        },
        pod={"volumes": [{"name": c.FEEDBACK_VOLUME, "emptyDir": {}}, {"name": "data", "emptyDir": {}}]},
    )
    deployment = deployment_for(OWNER, replace(SPEC, pod_template=hostile), RELEASE)
    base = built()
    assert container(deployment)["volumeMounts"] == container(base)["volumeMounts"]
    assert pod(deployment)["volumes"] == [*pod(base)["volumes"], {"name": "data", "emptyDir": {}}]


def test_what_the_operator_owns_in_the_container_and_pod_is_untouched() -> None:
    base, custom = built(), built(FULL, resources={})
    for key in ("name", "image", "ports", "readinessProbe", "livenessProbe", "lifecycle", "securityContext"):
        assert container(custom)[key] == container(base)[key], key
    for key in (
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "securityContext",
    ):
        assert pod(custom)[key] == pod(base)[key], key
    assert [item["name"] for item in pod(custom)["containers"]] == [c.CONTAINER_NAME]
    # A ServiceAccount for a cloud identity, still without the Kubernetes API token.
    assert pod(custom)["serviceAccountName"] == "iris-s3"
    assert pod(custom)["automountServiceAccountToken"] is False


def test_a_spread_constraint_without_a_selector_counts_its_own_deployments_pods() -> None:
    spec = spec_with({"spec": {"topologySpreadConstraints": FULL["spec"]["topologySpreadConstraints"]}})
    main = pod(deployment_for(OWNER, spec, RELEASE))["topologySpreadConstraints"][0]
    candidate = pod(
        candidate_deployment_for(OWNER, spec, RELEASE, stable_version="v1", replicas=1, in_service=False)
    )
    assert main["labelSelector"] == {"matchLabels": {c.LABEL_MODEL: "iris"}}
    assert candidate["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {c.LABEL_CANDIDATE_OF: "iris"}
    }
    chosen = {"matchLabels": {"app": "x"}}
    spec = spec_with({"spec": {"topologySpreadConstraints": [{**main, "labelSelector": chosen}]}})
    assert (
        pod(deployment_for(OWNER, spec, RELEASE))["topologySpreadConstraints"][0]["labelSelector"] == chosen
    )


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (None, RESTRICTED),
        (
            {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True},
            {**RESTRICTED, "runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True},
        ),
        (
            {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW"]}},
            {**RESTRICTED, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        ),
        (
            {"seccompProfile": {"type": "Localhost", "localhostProfile": "fetch.json"}},
            {**RESTRICTED, "seccompProfile": {"type": "Localhost", "localhostProfile": "fetch.json"}},
        ),
        # Past the CRD and the parser: nothing looser than restricted gets through.
        (
            {
                "privileged": True,
                "allowPrivilegeEscalation": True,
                "runAsNonRoot": False,
                "runAsUser": 0,
                "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Unconfined"},
            },
            {**RESTRICTED, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        ),
    ],
)
def test_init_containers_stay_within_restricted_pod_security(asked: Any, expected: dict[str, Any]) -> None:
    user = {"name": "fetch", "image": "x", **({"securityContext": asked} if asked is not None else {})}
    assert init_container(user)["securityContext"] == expected


def test_candidates_get_the_same_pod_template_as_the_stable_deployment() -> None:
    spec = spec_with(FULL, resources={})
    main = deployment_for(OWNER, spec, RELEASE)
    for in_service in (True, False):
        candidate = candidate_deployment_for(
            OWNER, spec, V1, stable_version="v2", replicas=1, in_service=in_service
        )
        for key in ("nodeSelector", "tolerations", "affinity", "serviceAccountName", "imagePullSecrets",
                    "priorityClassName", "initContainers", "volumes"):  # fmt: skip
            assert pod(candidate)[key] == pod(main)[key], key
        for key in ("envFrom", "volumeMounts", "resources"):
            assert container(candidate)[key] == container(main)[key], key
        assert container(candidate)["env"][-2:] == container(main)["env"][-2:]
        assert candidate["spec"]["template"]["metadata"]["labels"]["team"] == "fraud"


# --- properties over generated templates -----------------------------------------------------


def _security(hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    risky = {
        "privileged": st.booleans(),
        "allowPrivilegeEscalation": st.booleans(),
        "runAsNonRoot": st.booleans(),
        "runAsUser": st.integers(0, 2000),
        "capabilities": st.fixed_dictionaries(
            {"add": st.lists(st.sampled_from(["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]))}
        ),
        "seccompProfile": st.fixed_dictionaries(
            {"type": st.sampled_from(["RuntimeDefault", "Localhost", "Unconfined"])}
        ),
    }
    safe = {"runAsUser": st.integers(1, 2000), "runAsGroup": st.integers(0, 2000)}
    return st.fixed_dictionaries(
        {}, optional={"readOnlyRootFilesystem": st.booleans(), **(risky if hostile else safe)}
    )


def templates(*, hostile: bool) -> st.SearchStrategy[PodTemplate]:
    """Generated podTemplates; `hostile` ones also collide with the operator (its env names, volume
    names, mount paths, labels and annotations) and ask for privileged or root init containers."""
    names = st.sampled_from(["a", "b", "data", "models", *(OPERATOR_VOLUMES if hostile else ())])
    env_names = st.sampled_from(["A", "B", "AWS_REGION", *(RESERVED_ENV if hostile else ())])
    paths = st.sampled_from(
        [
            "/data",
            "/models",
            "/srv/x",
            *((*OPERATOR_MOUNT_PATHS, "/var/run/vigil", "/tmp/x") if hostile else ()),
        ]
    )
    label_keys = st.sampled_from(
        [
            "team",
            "tier",
            "example.com/x",
            *((c.LABEL_MODEL, c.LABEL_VERSION, *OWNED_LABELS) if hostile else ()),
        ]
    )
    annotation_keys = st.sampled_from(
        ["a", "example.com/b", "prometheus.io/port", *((c.ANNOTATION_RELEASE,) if hostile else ())]
    )
    return st.builds(
        PodTemplate,
        labels=st.dictionaries(label_keys, st.sampled_from(["x", "y"]), max_size=4),
        annotations=st.dictionaries(annotation_keys, st.sampled_from(["x", "y"]), max_size=3),
        container=st.fixed_dictionaries(
            {},
            optional={
                "env": st.lists(
                    st.fixed_dictionaries({"name": env_names, "value": st.sampled_from(["1", "2"])}),
                    max_size=4,
                    unique_by=lambda e: e["name"],
                ),
                "envFrom": st.lists(
                    st.fixed_dictionaries({"secretRef": st.fixed_dictionaries({"name": names})}), max_size=2
                ),
                "volumeMounts": st.lists(
                    st.fixed_dictionaries({"name": names, "mountPath": paths}),
                    max_size=3,
                    unique_by=lambda m: m["mountPath"],
                ),
                "resources": st.fixed_dictionaries(
                    {"limits": st.fixed_dictionaries({"cpu": st.sampled_from(["1", "500m"])})}
                ),
            },
        ),
        pod=st.fixed_dictionaries(
            {},
            optional={
                "volumes": st.lists(
                    st.fixed_dictionaries({"name": names, "emptyDir": st.just({})}),
                    max_size=3,
                    unique_by=lambda v: v["name"],
                ),
                "initContainers": st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["one", "two"]), "image": st.just("x")},
                        optional={"securityContext": _security(hostile)},
                    ),
                    max_size=2,
                    unique_by=lambda i: i["name"],
                ),
                "nodeSelector": st.dictionaries(st.sampled_from(["pool", "zone"]), st.just("x"), max_size=2),
                "tolerations": st.lists(
                    st.fixed_dictionaries(
                        {"key": st.sampled_from(["gpu", "spot"]), "operator": st.just("Exists")}
                    ),
                    max_size=2,
                ),
                "serviceAccountName": st.sampled_from(["iris", "", "default"]),
                "priorityClassName": st.sampled_from(["high", ""]),
            },
        ),
    )


# Any template, hostile ones included: the merge must hold its ground without the CRD's and the
# parser's help.
TEMPLATES = templates(hostile=True)
BUILDS = st.sampled_from(["main", "shadow", "canary"])


def build(kind: str, template: PodTemplate) -> dict[str, Any]:
    spec = replace(SPEC, pod_template=template)
    if kind == "main":
        return deployment_for(OWNER, spec, RELEASE, scrape_annotations=True, mirror_url="http://10.96.0.9:80")
    return candidate_deployment_for(
        OWNER, spec, RELEASE, stable_version="v1", replicas=1, in_service=kind == "canary"
    )


def operators(metadata: dict[str, str]) -> dict[str, str]:
    """The labels or annotations the operator sets (SPEC's podLabels and podAnnotations are a user's)."""
    return {
        key: value for key, value in metadata.items() if key not in SPEC.pod_labels | SPEC.pod_annotations
    }


def restricted(security: dict[str, Any]) -> bool:
    return (
        security.get("privileged") is not True
        and security["allowPrivilegeEscalation"] is False
        and security["runAsNonRoot"] is True
        and security.get("runAsUser") != 0
        and security["capabilities"]["drop"] == ["ALL"]
        and set(security["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
        and security["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    )


@settings(max_examples=300, deadline=None)
@given(template=TEMPLATES, kind=BUILDS)
def test_whatever_the_template_says_the_operators_part_of_the_pod_is_its_own(
    template: PodTemplate, kind: str
) -> None:
    base, custom = build(kind, PodTemplate()), build(kind, template)
    assert custom["spec"]["selector"] == base["spec"]["selector"]
    base_meta, meta = base["spec"]["template"]["metadata"], custom["spec"]["template"]["metadata"]
    assert operators(base_meta["labels"]).items() <= meta["labels"].items()
    assert operators(base_meta["annotations"]).items() <= meta["annotations"].items()
    # Not even added: a shadow's pods without vigil.dev/model stay out of the Service.
    for key in (*meta["labels"], *meta["annotations"]):
        assert not key.startswith("vigil.dev/") or key in {
            **base_meta["labels"],
            **base_meta["annotations"],
        }, key
    assert custom["spec"]["selector"]["matchLabels"].items() <= meta["labels"].items()
    base_container, merged = container(base), container(custom)
    for key in set(base_container) - {"env", "volumeMounts", "resources"}:
        assert merged[key] == base_container[key], key
    assert merged["env"][: len(base_container["env"])] == base_container["env"]
    assert not {item["name"] for item in merged["env"][len(base_container["env"]) :]} & set(RESERVED_ENV)
    assert len({item["name"] for item in merged["env"]}) == len(merged["env"])
    assert merged["volumeMounts"][: len(base_container["volumeMounts"])] == base_container["volumeMounts"]
    assert len({m["mountPath"] for m in merged["volumeMounts"]}) == len(merged["volumeMounts"])
    base_pod, merged_pod = pod(base), pod(custom)
    for key in set(base_pod) - {"volumes", "containers"}:
        assert merged_pod[key] == base_pod[key], key
    assert merged_pod["volumes"][: len(base_pod["volumes"])] == base_pod["volumes"]
    assert len({v["name"] for v in merged_pod["volumes"]}) == len(merged_pod["volumes"])
    reserved = {v["name"] for v in base_pod["volumes"]}
    for init in merged_pod.get("initContainers", []):
        assert restricted(init["securityContext"]), init
        assert not {m["name"] for m in init.get("volumeMounts", [])} & reserved


def _reordered(value: Any) -> Any:
    """The same value with every map's keys in reverse order (what a YAML or JSON round trip may do)."""
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


def _with_empties(template: PodTemplate) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "metadata": {"labels": dict(template.labels), "annotations": dict(template.annotations)},
        "spec": {**template.container, **template.pod},
    }
    for key in (
        "env",
        "envFrom",
        "volumeMounts",
        "volumes",
        "initContainers",
        "tolerations",
        "imagePullSecrets",
    ):
        raw["spec"].setdefault(key, [])
    for key in ("nodeSelector", "affinity", "resources"):
        raw["spec"].setdefault(key, {})
    return raw


VALID = templates(hostile=False)


@settings(max_examples=200, deadline=None)
@given(template=VALID, kind=BUILDS)
def test_the_rendered_pod_depends_on_what_the_template_says_not_how_it_is_written(
    template: PodTemplate, kind: str
) -> None:
    # Map order and empty fields change nothing: no pod rolls for them (same spec hash).
    raw = _with_empties(template)
    once = build(kind, parse_pod_template(raw))
    again = build(kind, parse_pod_template(_reordered(raw)))
    assert once == again
    assert once["metadata"]["labels"][c.LABEL_SPEC_HASH] == again["metadata"]["labels"][c.LABEL_SPEC_HASH]


@pytest.mark.parametrize("kind", ["main", "shadow", "canary"])
def test_an_empty_template_renders_exactly_the_operators_deployment(kind: str) -> None:
    empty = parse_pod_template(_with_empties(PodTemplate()))
    assert build(kind, empty) == build(kind, PodTemplate())


def test_a_pod_template_change_is_a_new_pod_template_but_not_a_new_release() -> None:
    before, after = built(), built({"spec": {"nodeSelector": {"pool": "gpu"}}})
    assert spec_hash(before["spec"]) != spec_hash(after["spec"])
    assert before["metadata"]["labels"][c.LABEL_SPEC_HASH] != after["metadata"]["labels"][c.LABEL_SPEC_HASH]
    release = c.ANNOTATION_RELEASE
    assert (
        before["spec"]["template"]["metadata"]["annotations"][release]
        == after["spec"]["template"]["metadata"]["annotations"][release]
    )


@pytest.mark.parametrize(("asked", "mounted"), [(None, False), (False, False), (True, True)])
def test_the_api_token_stays_out_unless_the_pod_template_mounts_it(asked: bool | None, mounted: bool) -> None:
    template = {"spec": {"serviceAccountName": "iris-s3"}}
    if asked is not None:
        template["spec"]["automountServiceAccountToken"] = asked
    assert pod(built(template))["automountServiceAccountToken"] is mounted
