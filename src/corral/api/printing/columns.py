"""Table column definitions per kind, as the real API server registers them.

Names, order, types and priorities follow ``pkg/printers/internalversion/printers.go`` (Kubernetes 1.32).
Priority-1 columns are the ``-o wide`` ones: the server always sends them and kubectl hides them. Types are
upstream's even where the cells disagree (Deployment "Up-to-date" is declared ``string`` but carries an
integer; CronJob "Suspend" is ``boolean`` but carries "False"), because kubectl only uses the type for
alignment. Descriptions are the upstream Go doc strings (the OpenAPI descriptions of the same fields). Pure
data.
"""

from __future__ import annotations

from typing import Any, Final

# Upstream descriptions: the SwaggerDoc of the field each column shows.
_NAME: Final = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_POD_READY: Final = "The aggregate readiness state of this pod for accepting traffic."
_POD_STATUS: Final = "The aggregate status of the containers in this pod."
_POD_RESTARTS: Final = (
    "The number of times the containers in this pod have been restarted and when the last container in "
    "this pod has restarted."
)
_AGE: Final = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null "
    "for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_POD_IP: Final = (
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."
)
_POD_NODE: Final = (
    "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for "
    "scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this "
    "node becomes responsible for the lifecycle of this pod. This field should not be used to express a "
    "desire for the pod to be scheduled on a specific node. "
    "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"
)
_POD_NOMINATED_NODE: Final = (
    "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be "
    "scheduled right away as preemption victims receive their graceful termination periods. This field "
    "does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod "
    "elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on "
    "this node to a higher priority pod that is created after preemption. As a result, this field may be "
    "different than PodSpec.nodeName when the pod is scheduled."
)
_POD_READINESS_GATES: Final = (
    "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its "
    "containers are ready AND all conditions specified in the readiness gates have status equal to "
    '"True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates'
)
_REPLICA_SET_DESIRED: Final = (
    "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero "
    "and unspecified. Defaults to 1. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_REPLICA_SET_CURRENT: Final = (
    "Replicas is the most recently observed number of replicas. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_REPLICA_SET_READY: Final = (
    "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition."
)
_CONTAINERS: Final = "Names of each container in the template."
_IMAGES: Final = "Images referenced by each container in the template."
_REPLICA_SET_SELECTOR: Final = (
    "Selector is a label query over pods that should match the replica count. Label keys and values that "
    "must match in order to be controlled by this replica set. It must match the pod template's labels. "
    "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_JOB_STATUS: Final = "Status of the job."
_JOB_COMPLETIONS: Final = (
    "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. "
    "However, it may decrease in reaction to scale down of elastic indexed jobs."
)
_JOB_DURATION: Final = "Time required to complete the job."
_JOB_SELECTOR: Final = (
    "A label query over pods that should match the pod count. Normally, the system sets this field for "
    "you. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_CRON_JOB_SCHEDULE: Final = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."
_CRON_JOB_TIMEZONE: Final = (
    "The time zone name for the given schedule, see "
    "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to "
    "the time zone of the kube-controller-manager process. The set of valid time zone names and the time "
    "zone offset is loaded from the system-wide time zone database by the API server during CronJob "
    "validation and the controller manager during execution. If no system-wide time zone database can be "
    "found a bundled version of the database is used instead. If the time zone name becomes invalid during "
    "the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating "
    "new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be "
    "found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"
)
_CRON_JOB_SUSPEND: Final = (
    "This flag tells the controller to suspend subsequent executions, it does not apply to already started "
    "executions.  Defaults to false."
)
_CRON_JOB_ACTIVE: Final = "A list of pointers to currently running jobs."
_CRON_JOB_LAST_SCHEDULE: Final = "Information when was the last time the job was successfully scheduled."
_SERVICE_TYPE: Final = (
    "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, "
    'ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a cluster-internal IP address for '
    "load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by "
    'manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is "None", no '
    "virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual "
    'IP. "NodePort" builds on ClusterIP and allocates a port on every node which routes to the same '
    'endpoints as the clusterIP. "LoadBalancer" builds on NodePort and creates an external load-balancer '
    "(if supported in the current cloud) which routes to the same endpoints as the clusterIP. "
    '"ExternalName" aliases this service to the specified externalName. Several other fields do not '
    "apply to ExternalName services. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"
)
_SERVICE_CLUSTER_IP: Final = (
    "clusterIP is the IP address of the service and is usually assigned randomly. If an address is "
    "specified manually, is in-range (as per system configuration), and is not in use, it will be "
    "allocated to the service; otherwise creation of the service will fail. This field may not be changed "
    "through updates unless the type field is also being changed to ExternalName (which requires this "
    "field to be blank) or the type field is being changed from ExternalName (in which case this field may "
    'optionally be specified, as describe above).  Valid values are "None", empty string (""), or a '
    'valid IP address. Setting this to "None" makes a "headless service" (no virtual IP), which is '
    "useful when direct endpoint connections are preferred and proxying is not required.  Only applies to "
    "types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of "
    "type ExternalName, creation will fail. This field will be wiped when updating a Service to type "
    "ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
)
_SERVICE_EXTERNAL_IP: Final = (
    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for "
    "this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that "
    "traffic arrives at a node with this IP.  A common example is external load-balancers that are not "
    "part of the Kubernetes system."
)
_SERVICE_PORT_S: Final = (
    "The list of ports that are exposed by this service. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
)
_SERVICE_SELECTOR: Final = (
    "Route service traffic to pods with label keys and values matching this selector. If empty or not "
    "present, the service is assumed to have an external process managing its endpoints, which Kubernetes "
    "will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is "
    "ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"
)
_ENDPOINTS_ENDPOINTS: Final = (
    "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to "
    "the IPs they share. A single address with multiple ports, some of which are ready and some of which "
    "are not (because they come from different containers) will result in the address being displayed in "
    "different subsets for the different ports. No address will appear in both Addresses and "
    "NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."
)
_NODE_STATUS: Final = "The status of the node"
_NODE_ROLES: Final = "The roles of the node"
_NODE_VERSION: Final = "Kubelet Version reported by the node."
_NODE_ADDRESSES: Final = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. More info: "
    "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as "
    "mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is "
    "merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an "
    "example. Consumers should assume that addresses can change during the lifetime of a Node. However, "
    "there are some exceptions where this may not be possible, such as Pods that inherit a Node's address "
    "in its own status or consumers of the downward API (status.hostIP)."
)
_NODE_OS_IMAGE: Final = (
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."
)
_NODE_KERNEL_VERSION: Final = (
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."
)
_NODE_CONTAINER_RUNTIME: Final = (
    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."
)
_EVENT_LAST_SEEN: Final = "The time at which the most recent occurrence of this event was recorded."
_EVENT_TYPE: Final = "Type of this event (Normal, Warning), new types could be added in the future"
_EVENT_REASON: Final = (
    "This should be a short, machine understandable string that gives the reason for the transition into "
    "the object's current status."
)
_EVENT_OBJECT: Final = "The object that this event is about."
_EVENT_SUBOBJECT: Final = (
    "If referring to a piece of an object instead of an entire object, this string should contain a valid "
    "JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the "
    "object reference is to a container within a pod, this would take on a value like: "
    '"spec.containers{name}" (where "name" refers to the name of the container that triggered the '
    'event) or if no container name is specified "spec.containers[2]" (container with index 2 in this '
    "pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."
)
_EVENT_SOURCE: Final = "The component reporting this event. Should be a short machine understandable string."
_EVENT_MESSAGE: Final = "A human-readable description of the status of this operation."
_EVENT_FIRST_SEEN: Final = (
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"
)
_EVENT_COUNT: Final = "The number of times this event has occurred."
_NAMESPACE_STATUS: Final = "The status of the namespace"
_SECRET_TYPE: Final = (
    "Used to facilitate programmatic handling of secret data. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"
)
_SECRET_DATA: Final = (
    "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The "
    "serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly "
    "non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"
)
_SERVICE_ACCOUNT_SECRETS: Final = (
    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount "
    "are allowed to use. Pods are only limited to this list if this service account has a "
    '"kubernetes.io/enforce-mountable-secrets" annotation set to "true". The '
    '"kubernetes.io/enforce-mountable-secrets" annotation is deprecated since v1.32. Prefer separate '
    "namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated "
    "service account token secrets for use outside of pods. Instead, tokens can be requested directly "
    "using the TokenRequest API, or service account token secrets can be manually created. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret"
)
_DEPLOYMENT_READY: Final = "Number of the pod with ready state"
_DEPLOYMENT_UP_TO_DATE: Final = (
    "Total number of non-terminated pods targeted by this deployment that have the desired template spec."
)
_DEPLOYMENT_AVAILABLE: Final = (
    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."
)
_DEPLOYMENT_SELECTOR: Final = (
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones "
    "affected by this deployment. It must match the pod template's labels."
)
_HPA_REFERENCE: Final = (
    "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics "
    "should be collected, as well as to actually change the replica count."
)
_HPA_TARGETS: Final = (
    "metrics contains the specifications for which to use to calculate the desired replica count (the "
    "maximum replica count across all metrics will be used).  The desired replica count is calculated "
    "multiplying the ratio between the target value and the current value by the current number of pods.  "
    "Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual "
    "metric source types for more information about how each type of metric must respond. If not set, the "
    "default metric will be set to 80% average CPU utilization."
)
_HPA_MINPODS: Final = (
    "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It "
    "defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is "
    "enabled and at least one Object or External metric is configured.  Scaling is active as long as at "
    "least one metric value is available."
)
_HPA_MAXPODS: Final = (
    "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It "
    "cannot be less that minReplicas."
)
_HPA_REPLICAS: Final = (
    "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the "
    "autoscaler."
)
_CONFIG_MAP_DATA: Final = (
    "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or "
    "'.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must "
    "not overlap with the keys in the BinaryData field, this is enforced during validation process."
)
_LEASE_HOLDER: Final = (
    "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election "
    "is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."
)

_ENDPOINT_SLICE_ADDRESS_TYPE: Final = (
    "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice "
    "must be the same type. This field is immutable after creation. The following address types are "
    "currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: "
    "Represents a Fully Qualified Domain Name."
)
_ENDPOINT_SLICE_PORTS: Final = (
    "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have "
    "a unique name. When ports is empty, it indicates that there are no defined ports. When a port is "
    'defined with a nil port value, it indicates "all ports". Each slice may include a maximum of 100 '
    "ports."
)
_ENDPOINT_SLICE_ENDPOINTS: Final = (
    "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 "
    "endpoints."
)
# Ingress and IngressClass columns carry hand-written descriptions upstream, not SwaggerDocs.
_INGRESS_CLASS: Final = "The name of the IngressClass resource that should be used for this Ingress"
_INGRESS_HOSTS: Final = "Hosts that incoming requests are matched against before the ingress rule"
_INGRESS_ADDRESS: Final = "Address is a list containing ingress points for the load-balancer"
_INGRESS_PORTS: Final = "Ports of TLS configurations that open"
_INGRESS_CLASS_CONTROLLER: Final = "Controller that is responsible for handling this class"
_INGRESS_CLASS_PARAMETERS: Final = "A reference to a resource with additional parameters"

# PodDisruptionBudget columns carry hand-written descriptions upstream.
_PDB_MIN_AVAILABLE: Final = "The minimum number of pods that must be available."
_PDB_MAX_UNAVAILABLE: Final = "The maximum number of pods that may be unavailable."
_PDB_ALLOWED_DISRUPTIONS: Final = "Calculated number of pods that may be disrupted at this time."


def _col(name: str, typ: str, description: str, *, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    # Key order is Go's field order in TableColumnDefinition, so encoded bodies read like upstream's.
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


COLUMNS: Final[dict[str, list[dict[str, Any]]]] = {
    "Pod": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Ready", "string", _POD_READY),
        _col("Status", "string", _POD_STATUS),
        _col("Restarts", "string", _POD_RESTARTS),
        _col("Age", "string", _AGE),
        _col("IP", "string", _POD_IP, priority=1),
        _col("Node", "string", _POD_NODE, priority=1),
        _col("Nominated Node", "string", _POD_NOMINATED_NODE, priority=1),
        _col("Readiness Gates", "string", _POD_READINESS_GATES, priority=1),
    ],
    "ReplicaSet": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Desired", "integer", _REPLICA_SET_DESIRED),
        _col("Current", "integer", _REPLICA_SET_CURRENT),
        _col("Ready", "integer", _REPLICA_SET_READY),
        _col("Age", "string", _AGE),
        _col("Containers", "string", _CONTAINERS, priority=1),
        _col("Images", "string", _IMAGES, priority=1),
        _col("Selector", "string", _REPLICA_SET_SELECTOR, priority=1),
    ],
    "Job": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Status", "string", _JOB_STATUS),
        _col("Completions", "string", _JOB_COMPLETIONS),
        _col("Duration", "string", _JOB_DURATION),
        _col("Age", "string", _AGE),
        _col("Containers", "string", _CONTAINERS, priority=1),
        _col("Images", "string", _IMAGES, priority=1),
        _col("Selector", "string", _JOB_SELECTOR, priority=1),
    ],
    "CronJob": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Schedule", "string", _CRON_JOB_SCHEDULE),
        _col("Timezone", "string", _CRON_JOB_TIMEZONE),
        _col("Suspend", "boolean", _CRON_JOB_SUSPEND),
        _col("Active", "integer", _CRON_JOB_ACTIVE),
        _col("Last Schedule", "string", _CRON_JOB_LAST_SCHEDULE),
        _col("Age", "string", _AGE),
        _col("Containers", "string", _CONTAINERS, priority=1),
        _col("Images", "string", _IMAGES, priority=1),
        _col("Selector", "string", _JOB_SELECTOR, priority=1),
    ],
    "Service": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Type", "string", _SERVICE_TYPE),
        _col("Cluster-IP", "string", _SERVICE_CLUSTER_IP),
        _col("External-IP", "string", _SERVICE_EXTERNAL_IP),
        _col("Port(s)", "string", _SERVICE_PORT_S),
        _col("Age", "string", _AGE),
        _col("Selector", "string", _SERVICE_SELECTOR, priority=1),
    ],
    "Endpoints": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Endpoints", "string", _ENDPOINTS_ENDPOINTS),
        _col("Age", "string", _AGE),
    ],
    "EndpointSlice": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("AddressType", "string", _ENDPOINT_SLICE_ADDRESS_TYPE),
        _col("Ports", "string", _ENDPOINT_SLICE_PORTS),
        _col("Endpoints", "string", _ENDPOINT_SLICE_ENDPOINTS),
        _col("Age", "string", _AGE),
    ],
    "Ingress": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Class", "string", _INGRESS_CLASS),
        _col("Hosts", "string", _INGRESS_HOSTS),
        _col("Address", "string", _INGRESS_ADDRESS),
        _col("Ports", "string", _INGRESS_PORTS),
        _col("Age", "string", _AGE),
    ],
    "IngressClass": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Controller", "string", _INGRESS_CLASS_CONTROLLER),
        _col("Parameters", "string", _INGRESS_CLASS_PARAMETERS),
        _col("Age", "string", _AGE),
    ],
    "Node": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Status", "string", _NODE_STATUS),
        _col("Roles", "string", _NODE_ROLES),
        _col("Age", "string", _AGE),
        _col("Version", "string", _NODE_VERSION),
        _col("Internal-IP", "string", _NODE_ADDRESSES, priority=1),
        _col("External-IP", "string", _NODE_ADDRESSES, priority=1),
        _col("OS-Image", "string", _NODE_OS_IMAGE, priority=1),
        _col("Kernel-Version", "string", _NODE_KERNEL_VERSION, priority=1),
        _col("Container-Runtime", "string", _NODE_CONTAINER_RUNTIME, priority=1),
    ],
    # Events lead with "Last Seen"; their Name column comes last, wide-only, still with format "name".
    "Event": [
        _col("Last Seen", "string", _EVENT_LAST_SEEN),
        _col("Type", "string", _EVENT_TYPE),
        _col("Reason", "string", _EVENT_REASON),
        _col("Object", "string", _EVENT_OBJECT),
        _col("Subobject", "string", _EVENT_SUBOBJECT, priority=1),
        _col("Source", "string", _EVENT_SOURCE, priority=1),
        _col("Message", "string", _EVENT_MESSAGE),
        _col("First Seen", "string", _EVENT_FIRST_SEEN, priority=1),
        _col("Count", "string", _EVENT_COUNT, priority=1),
        _col("Name", "string", _NAME, priority=1, fmt="name"),
    ],
    "Namespace": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Status", "string", _NAMESPACE_STATUS),
        _col("Age", "string", _AGE),
    ],
    "Secret": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Type", "string", _SECRET_TYPE),
        _col("Data", "string", _SECRET_DATA),
        _col("Age", "string", _AGE),
    ],
    "ServiceAccount": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Secrets", "string", _SERVICE_ACCOUNT_SECRETS),
        _col("Age", "string", _AGE),
    ],
    "Deployment": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Ready", "string", _DEPLOYMENT_READY),
        _col("Up-to-date", "string", _DEPLOYMENT_UP_TO_DATE),
        _col("Available", "string", _DEPLOYMENT_AVAILABLE),
        _col("Age", "string", _AGE),
        _col("Containers", "string", _CONTAINERS, priority=1),
        _col("Images", "string", _IMAGES, priority=1),
        _col("Selector", "string", _DEPLOYMENT_SELECTOR, priority=1),
    ],
    "HorizontalPodAutoscaler": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Reference", "string", _HPA_REFERENCE),
        _col("Targets", "string", _HPA_TARGETS),
        _col("MinPods", "string", _HPA_MINPODS),
        _col("MaxPods", "string", _HPA_MAXPODS),
        _col("Replicas", "string", _HPA_REPLICAS),
        _col("Age", "string", _AGE),
    ],
    "ConfigMap": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Data", "string", _CONFIG_MAP_DATA),
        _col("Age", "string", _AGE),
    ],
    "PodDisruptionBudget": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Min Available", "string", _PDB_MIN_AVAILABLE),
        _col("Max Unavailable", "string", _PDB_MAX_UNAVAILABLE),
        _col("Allowed Disruptions", "integer", _PDB_ALLOWED_DISRUPTIONS),
        _col("Age", "string", _AGE),
    ],
    "Lease": [
        _col("Name", "string", _NAME, fmt="name"),
        _col("Holder", "string", _LEASE_HOLDER),
        _col("Age", "string", _AGE),
    ],
}

GENERIC: Final[list[dict[str, Any]]] = [
    _col("Name", "string", _NAME, fmt="name"),
    _col("Age", "string", _AGE),
]
"""Kinds without a printer of their own: name and age."""


def columns_for(kind: str) -> list[dict[str, Any]]:
    """The shared (read-only) definitions for ``kind``; callers that hand them out copy them."""
    return COLUMNS.get(kind, GENERIC)
