"""Names shared by the operator, its manifests and its tests."""

GROUP = "vigil.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"

# Labels on everything the operator creates.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "vigil"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MODEL = "vigil.dev/model"
LABEL_VERSION = "vigil.dev/version"
# Shadow and Canary: the candidate runs in a Deployment of its own, `<name>-candidate`, whose
# selector is `vigil.dev/candidate-of: <name>`. Its pods carry `vigil.dev/model: <name>` only as a
# canary, when the ModelDeployment's Service (which selects on that label) must send them requests.
CANDIDATE_SUFFIX = "-candidate"
LABEL_CANDIDATE_OF = "vigil.dev/candidate-of"
LABEL_TRACK = "vigil.dev/track"  # `candidate` on the candidate's Deployment, pods and Service
TRACK_CANDIDATE = "candidate"
SERVICE_PORT = 80

# On the owned Deployment: the hash of the spec the operator last applied. An apply that changes
# the Deployment while this hash stays the same reverted someone else's edit (drift), not a
# rollout. A label, because `kubectl rollout undo` restores an old ReplicaSet's annotations.
LABEL_SPEC_HASH = "vigil.dev/spec-hash"
# On the pod template: which release (and retry) it runs. Rollouts are tracked by this id, which
# admission webhooks leave alone, not by the image or env they may mutate.
ANNOTATION_RELEASE = "vigil.dev/release"
# `kubectl vigil retry|rollback|promote NAME`: a manual action, in metadata (not in git), so a
# GitOps re-apply neither undoes nor repeats it; the operator removes it once handled.
ANNOTATION_ACTION = "vigil.dev/action"
# The field manager of the plugin's annotation. Flux's kustomize-controller removes, at its next
# apply, every field whose Update manager's name starts with "kubectl" (so a plain
# `kubectl annotate`, manager kubectl-annotate, is undone: tests/e2e/test_gitops.py shows it);
# this name is left alone.
CLI_FIELD_MANAGER = "vigil-cli"

SERVER_PORT = 8080
SERVER_PORT_NAME = "http"
# The model server pods: the operator's one container and its volumes (spec.podTemplate may add
# neither a container nor a volume under these names, nor mount anything at, above or below these
# paths). `model-pvc` is a pvc:// model's claim, mounted read-only under MODEL_PVC_ROOT/CLAIM.
CONTAINER_NAME = "model-server"
TMP_VOLUME = "tmp"
FEEDBACK_VOLUME = "feedback-token"
MODEL_PVC_VOLUME = "model-pvc"
MODEL_PVC_ROOT = "/var/lib/vigil/pvc"
HISTORY_LIMIT = 20  # the CRD's maxItems; a revert after promotion looks here for the previous stable release

# The feedback token: one Secret `<name>-feedback` per ModelDeployment, key `token`, mounted
# read-only into the model server pods; the server requires it as a bearer token on /feedback.
FEEDBACK_SECRET_SUFFIX = "-feedback"
FEEDBACK_TOKEN_KEY = "token"
FEEDBACK_TOKEN_DIR = "/var/run/vigil/feedback"
FEEDBACK_TOKEN_FILE = f"{FEEDBACK_TOKEN_DIR}/{FEEDBACK_TOKEN_KEY}"
# `kubectl annotate mdep NAME vigil.dev/rotate-feedback-token=<any new value>`: a new token. The
# handled value is recorded on the Secret (ANNOTATION_FEEDBACK_ROTATION), so the annotation may stay
# (in git, too): only a value not seen before rotates, and a re-sync does not rotate again.
ANNOTATION_ROTATE_FEEDBACK_TOKEN = "vigil.dev/rotate-feedback-token"
ANNOTATION_FEEDBACK_ROTATION = "vigil.dev/feedback-token-rotation"
