"""The Helm chart, rendered with the default and the production-like values, read as YAML."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from orchestrator.runtime.topics import topic_names
from schemas.topics import ALL_TOPICS
from tests.deploy.conftest import (
    CHART,
    PRODUCTION_VALUES,
    VALUES_FILES,
    Container,
    Helm,
    Manifest,
    containers,
    find,
)

#: Environment variables and settings keys that hold secrets by their name.
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|API_?KEY|PRIVATE_?KEY|SALT)", re.I)
ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*\}$")


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_helm_lint_passes(helm: Helm, values: str) -> None:
    args = ["lint", str(CHART), "--strict"]
    if VALUES_FILES[values] is not None:
        args += ["--values", str(VALUES_FILES[values])]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_container_has_resources(rendered: list[Manifest]) -> None:
    all_containers = list(containers(rendered))
    assert {c.workload["kind"] for c in all_containers} >= {"Deployment", "Job"}
    for c in all_containers:
        resources = c.spec.get("resources") or {}
        for part in ("requests", "limits"):
            assert resources.get(part, {}).get("memory"), f"{c.where}: no {part}.memory"
        assert resources["requests"].get("cpu"), f"{c.where}: no requests.cpu"


def test_every_long_running_container_has_probes_on_a_port_it_serves(
    rendered: list[Manifest],
) -> None:
    for c in containers(rendered):
        if c.workload["kind"] == "Job":
            continue  # runs to completion; Kubernetes probes do not apply
        ports = {p["name"]: p["containerPort"] for p in c.spec.get("ports", [])}
        liveness, readiness = c.spec.get("livenessProbe"), c.spec.get("readinessProbe")
        assert liveness and readiness, f"{c.where}: needs liveness and readiness probes"
        assert liveness["httpGet"]["path"] == "/healthz", c.where
        assert readiness["httpGet"]["path"] == "/readyz", c.where
        for probe in (liveness, readiness):
            assert probe["httpGet"]["port"] in ports, f"{c.where}: probes an undeclared port"
        env = c.env()
        served = env.get("DSR_HEALTH_PORT") or env.get("DSR_DASHBOARD_PORT")
        assert served is not None, f"{c.where}: the application is not told its health port"
        assert int(served["value"]) == ports[liveness["httpGet"]["port"]], (
            f"{c.where}: probes a port the process does not serve"
        )


def _effective(c: Container, key: str) -> Any:
    """A securityContext setting of the container, else of its pod."""
    own = (c.spec.get("securityContext") or {}).get(key)
    return own if own is not None else (c.pod.get("securityContext") or {}).get(key)


def test_every_container_runs_as_non_root_on_a_read_only_root(rendered: list[Manifest]) -> None:
    for c in containers(rendered):
        security = c.spec.get("securityContext") or {}
        assert _effective(c, "runAsNonRoot") is True, f"{c.where}: may run as root"
        assert (_effective(c, "runAsUser") or 0) > 0, f"{c.where}: runs as uid 0"
        assert security.get("readOnlyRootFilesystem") is True, f"{c.where}: writable root"
        assert security.get("allowPrivilegeEscalation") is False, c.where
        assert "ALL" in security.get("capabilities", {}).get("drop", []), c.where
        mounts = {m["mountPath"] for m in c.spec.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{c.where}: a read-only root needs a writable /tmp"
        assert c.pod.get("automountServiceAccountToken") is False, c.where


def _secret_looking(values: Any, path: str = "") -> list[str]:
    """Paths in a values tree where a secret-named key holds a literal value."""
    found = []
    if isinstance(values, dict):
        for key, value in values.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                found += _secret_looking(value, where)
            elif SECRET_NAME.search(str(key)) and value not in (None, "", [], {}):
                found.append(where)
    elif isinstance(values, list):
        for i, item in enumerate(values):
            found += _secret_looking(item, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_values_files_hold_no_secret(values: str) -> None:
    path = VALUES_FILES[values] or CHART / "values.yaml"
    data = yaml.safe_load(path.read_text())
    # Secrets are named by reference only: `...Secret.name`, `existingSecret`, `secretName`.
    literal = [
        p
        for p in _secret_looking(data)
        if not re.search(r"(Secret\.(name|key|certKey|keyKey)|existingSecret|secretName)$", p)
    ]
    assert literal == [], f"secret-looking literals in {path.name}: {literal}"


def test_secrets_reach_containers_only_by_reference(rendered: list[Manifest]) -> None:
    assert [m for m in rendered if m["kind"] == "Secret"] == [], "the chart must not own Secrets"
    for c in containers(rendered):
        for name, entry in c.env().items():
            if SECRET_NAME.search(name):
                assert "value" not in entry, f"{c.where}: {name} is a plain value"
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{c.where}: {name}"
        for source in c.spec.get("envFrom", []):
            assert "configMapRef" not in source, f"{c.where}: env from a ConfigMap"


def test_register_config_map_holds_references_not_credentials(rendered: list[Manifest]) -> None:
    register_maps = [m for m in rendered if m["kind"] == "ConfigMap" and "register" in str(m)]
    assert register_maps
    for config_map in register_maps:
        for text in config_map["data"].values():
            register = yaml.safe_load(text)
            for system in register["systems"]:
                for key, value in (system.get("settings") or {}).items():
                    if SECRET_NAME.search(key):
                        assert ENV_REFERENCE.match(str(value)), (
                            f"{system['name']}.settings.{key} must be a ${{VAR}} reference"
                        )


def test_schema_refuses_a_plain_password(helm: Helm) -> None:
    error = helm.template_error(sets={"kafka.sasl.password": "hunter2"})
    assert "kafka.sasl" in error and "password" in error
    assert "hunter2" not in error


def _topics_job(manifests: list[Manifest]) -> Manifest:
    job = find(manifests, "Job", "-topics")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    return job


def _job_configs(job: Manifest) -> dict[str, dict[str, str]]:
    """The topic configs the Job passes to `dsr topics create`, per topic ("*": every topic)."""
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["topics", "create"], "the Job must run the application's own command"
    configs: dict[str, dict[str, str]] = {}
    for flag, item in zip(args[2::2], args[3::2], strict=True):
        assert flag == "--config"
        target, _, value = item.partition("=")
        topic, _, key = target.rpartition(":")
        configs.setdefault(topic or "*", {})[key] = value
    return configs


def test_topics_job_configures_exactly_the_application_topics(rendered: list[Manifest]) -> None:
    configs = _job_configs(_topics_job(rendered))
    ours = {topic.name for topic in ALL_TOPICS}
    named = set(configs) - {"*"}
    assert named <= ours, f"retention for topics the application does not use: {named - ours}"
    # Every topic the application uses gets a deliberate retention: a new topic must too.
    assert named == ours, f"no retention.ms for {ours - named}"
    for topic in ours:
        assert int(configs[topic]["retention.ms"]) >= -1


def test_schema_knows_exactly_the_application_topics() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    retention = schema["properties"]["topics"]["properties"]["retentionMs"]
    assert sorted(retention["propertyNames"]["enum"]) == sorted(topic_names())


def test_schema_refuses_a_wrong_type_with_a_clear_message(helm: Helm) -> None:
    error = helm.template_error(sets={"orchestrator.replicas": "three"})
    assert "values don't meet the specifications of the schema" in error
    # Helm 3.17 says "Expected: integer, given: string"; later releases word it differently.
    assert "orchestrator" in error and "replicas" in error and "integer" in error


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            {"orchestrator.replicas": "5"},
            "orchestrator.replicas (5) is more than topics.partitions",
        ),
        (
            {"connectorGroups[0].name": "default", "connectorGroups[0].replicas": "9"},
            "connectorGroups[default].replicas (9) is more than topics.partitions (4)",
        ),
        (
            {
                "orchestrator.autoscaling.enabled": "true",
                "orchestrator.autoscaling.maxReplicas": "8",
            },
            "orchestrator.autoscaling.maxReplicas (8) is more than topics.partitions (4)",
        ),
        (
            {"connectors.autoscaling.enabled": "true", "connectors.autoscaling.maxReplicas": "9"},
            "connectorGroups[default].autoscaling.maxReplicas (9) is more than topics.partitions",
        ),
        ({"connectorGroups[0].name": "slow"}, 'connector group "default", but connectorGroups'),
        ({"kafka.bootstrapServers": "kafka"}, "kafka.bootstrapServers"),
        ({"kafka.sasl.passwordSecret.name": ""}, "kafka.sasl.passwordSecret.name"),
        ({"kafka.sasl.mechanism": "GSSAPI"}, "kafka.sasl.mechanism"),
        ({"securityContext.runAsNonRoot": "false"}, "securityContext.runAsNonRoot"),
        ({"topics.retentionMs.dsr\\.typo\\.v1": "1"}, "topics.retentionMs"),
        # Delivery and attribution (issue 13): e-mail needs a From address, the link lives at
        # most a day, and the officer's id is a staff id, never an e-mail address.
        ({"config.smtp.host": "smtp.example.com"}, "config.smtp.from (the From address) is"),
        ({"config.smtp.from": "not an address"}, "from"),
        ({"config.deliveryLinkHours": "48"}, "deliveryLinkHours"),
        ({"dashboard.officer": "anna@example.nl"}, "officer"),
        ({"dashboard.userHeader": "X Forwarded User"}, "userHeader"),
        ({"config.publicUrl": "privacy.example.com"}, "publicUrl"),
    ],
)
def test_values_that_cannot_work_are_refused(
    helm: Helm, sets: dict[str, str], expected: str
) -> None:
    assert expected in helm.template_error(sets=sets)


def test_production_values_connect_with_tls_and_scram(helm: Helm) -> None:
    manifests = helm.template(PRODUCTION_VALUES)
    orchestrator = find(manifests, "Deployment", "-orchestrator")
    assert orchestrator["spec"]["replicas"] == 3
    groups = sorted(
        m["metadata"]["name"].rsplit("-", 1)[1]
        for m in manifests
        if m["kind"] == "Deployment" and "-connectors-" in m["metadata"]["name"]
    )
    assert groups == ["default", "support"]
    client_ids = set()
    for c in containers(manifests):
        env = c.env()
        assert env["DSR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", c.where
        assert env["DSR_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", c.where
        assert env["DSR_KAFKA_PARTITIONS"]["value"] == "12", c.where
        ref = env["DSR_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        # One Kafka user per component where kafka.sasl.users names one, else the shared one.
        component = c.workload["metadata"]["name"].removeprefix("dsr-dsr-orchestrator-")
        user = "dsr-orchestrator" if component in ("orchestrator", "topics") else f"dsr-{component}"
        assert ref == {"name": user, "key": "password"}, c.where
        assert env["DSR_KAFKA_SASL_USERNAME"]["value"] == user, c.where
        cafile = env["DSR_KAFKA_SSL_CAFILE"]["value"]
        mounts = {m["mountPath"]: m["name"] for m in c.spec["volumeMounts"]}
        volume = mounts[cafile.rsplit("/", 1)[0]]
        secret = next(v for v in c.pod["volumes"] if v["name"] == volume)["secret"]
        assert secret["secretName"] == "dsr-kafka-cluster-ca-cert", c.where
        client_ids.add(env["DSR_KAFKA_CLIENT_ID"]["value"])
    assert len(client_ids) == 5  # orchestrator, two connector groups, dashboard, topics Job


def test_production_values_scale_each_connector_group_alone(helm: Helm) -> None:
    manifests = helm.template(PRODUCTION_VALUES)
    support = find(manifests, "Deployment", "-connectors-support")
    assert "replicas" not in support["spec"], "the autoscaler owns the replicas"
    args = support["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["worker", "connectors", "--group", "support"]
    hpa = find(manifests, "HorizontalPodAutoscaler", "-connectors-support")
    assert hpa["spec"]["scaleTargetRef"]["name"] == support["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert metric["selector"]["matchLabels"] == {"consumergroup": "dsr-connectors-support"}
    budgets = {m["metadata"]["name"] for m in manifests if m["kind"] == "PodDisruptionBudget"}
    assert {name.rsplit("-", 1)[1] for name in budgets} >= {"orchestrator", "default", "support"}
    assert (
        find(manifests, "ServiceMonitor", "dsr-orchestrator")["spec"]["endpoints"][0]["path"]
        == "/metrics"
    )


def test_production_values_configure_verification_delivery_and_attribution(helm: Helm) -> None:
    """Issue 13's settings reach every process: the policy, e-mail delivery (the password only
    from a Secret) and the dashboard's signed-in officer header."""
    manifests = helm.template(PRODUCTION_VALUES)
    for c in containers(manifests):
        if c.where.startswith("Job"):
            continue  # the topics Job runs no application
        env = c.env()
        assert env["DSR_APPROVAL_REQUIRED"]["value"] == "erasure", c.where
        assert env["DSR_VERIFICATION_POLICY"]["value"] == "", c.where  # the defaults
        assert env["DSR_REMINDER_AFTER_DAYS"]["value"] == "14", c.where
        assert env["DSR_WAITING_WARNING_DAYS"]["value"] == "14", c.where
        assert env["DSR_PUBLIC_URL"]["value"] == "https://privacy.webwinkel.example", c.where
        assert env["DSR_DELIVERY_LINK_HOURS"]["value"] == "24", c.where
        assert env["DSR_SMTP_HOST"]["value"] == "smtp.webwinkel.example", c.where
        assert env["DSR_SMTP_PORT"]["value"] == "587", c.where
        assert env["DSR_SMTP_FROM"]["value"] == "privacy@webwinkel.example", c.where
        assert env["DSR_SMTP_STARTTLS"]["value"] == "true", c.where
        assert env["DSR_SMTP_USERNAME"]["value"] == "dsr-orchestrator", c.where
        ref = env["DSR_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "dsr-smtp", "key": "password"}, c.where
        assert env["DSR_DASHBOARD_USER_HEADER"]["value"] == "X-Forwarded-User", c.where
        assert "DSR_DASHBOARD_OFFICER" not in env, c.where


def test_default_values_send_no_email_and_name_no_officer(helm: Helm) -> None:
    for c in containers(helm.template()):
        names = set(c.env())
        assert not {n for n in names if n.startswith("DSR_SMTP_")}, c.where
        assert not names & {"DSR_PUBLIC_URL", "DSR_DASHBOARD_USER_HEADER", "DSR_DASHBOARD_OFFICER"}


def test_a_single_officer_setup_records_the_fixed_staff_id(helm: Helm) -> None:
    manifests = helm.template(sets={"dashboard.officer": "officer-7"})
    dashboard = next(c for c in containers(manifests) if "-dashboard" in c.where)
    assert dashboard.env()["DSR_DASHBOARD_OFFICER"]["value"] == "officer-7"


# Least privilege (issue 16): secure Kafka by default, NetworkPolicies, keys only where needed.


def _app_containers(manifests: list[Manifest]) -> dict[str, Container]:
    """The application containers by workload name suffix (orchestrator, dashboard, ...)."""
    return {
        c.workload["metadata"]["name"].removeprefix("dsr-dsr-orchestrator-"): c
        for c in containers(manifests)
        if c.workload["kind"] == "Deployment"
    }


def test_defaults_connect_to_kafka_with_tls_and_sasl(helm: Helm) -> None:
    for c in containers(helm.template()):
        env = c.env()
        assert env["DSR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", c.where
        assert env["DSR_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", c.where
        assert "secretKeyRef" in env["DSR_KAFKA_SASL_PASSWORD"]["valueFrom"], c.where
        assert "DSR_ALLOW_INSECURE_KAFKA" not in env, c.where


@pytest.mark.parametrize(
    "sets",
    [
        {"kafka.tls.enabled": "false", "kafka.sasl.enabled": "false"},
        {"kafka.tls.enabled": "false"},
        {"kafka.sasl.enabled": "false"},
    ],
)
def test_plaintext_kafka_without_the_explicit_flag_fails_to_render(
    helm: Helm, sets: dict[str, str]
) -> None:
    error = helm.template_error(sets=sets)
    assert "allowInsecureKafka: true" in error and "forge tasks and outcomes" in error


def test_plaintext_kafka_with_the_flag_tells_every_process(helm: Helm) -> None:
    sets = {
        "allowInsecureKafka": "true",
        "kafka.tls.enabled": "false",
        "kafka.sasl.enabled": "false",
    }
    for c in containers(helm.template(sets=sets)):
        env = c.env()
        assert env["DSR_KAFKA_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT", c.where
        assert env["DSR_ALLOW_INSECURE_KAFKA"]["value"] == "true", c.where


def test_mutual_tls_without_sasl_is_not_plaintext(helm: Helm) -> None:
    sets = {"kafka.sasl.enabled": "false", "kafka.tls.clientCertSecret.name": "dsr-kafka-user"}
    for c in containers(helm.template(sets=sets)):
        assert c.env()["DSR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SSL", c.where


def _policies(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {
        m["metadata"]["name"].removeprefix("dsr-dsr-orchestrator-"): m
        for m in manifests
        if m["kind"] == "NetworkPolicy"
    }


def _egress_ports(policy: Manifest) -> set[int]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_defaults_render_network_policies_for_every_component(helm: Helm) -> None:
    manifests = helm.template()
    policies = _policies(manifests)
    assert set(policies) == {"orchestrator", "connectors-default", "dashboard", "topics"}
    for name, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], name
        # Kafka and DNS only: no SMTP without a host, no vendor without configured hosts.
        assert _egress_ports(policy) == {9093, 53}, name
    assert policies["orchestrator"]["spec"]["ingress"] == []
    assert policies["connectors-default"]["spec"]["ingress"] == []
    (dashboard_in,) = policies["dashboard"]["spec"]["ingress"]
    assert dashboard_in["ports"] == [{"port": 8000, "protocol": "TCP"}]
    sources = dashboard_in["from"]
    assert sources and all("namespaceSelector" in peer for peer in sources)


def test_production_network_policies_reach_only_their_own_hosts(helm: Helm) -> None:
    policies = _policies(helm.template(PRODUCTION_VALUES))
    assert _egress_ports(policies["orchestrator"]) == {9093, 53, 587}  # + SMTP
    for group, cidr in (("default", "104.16.0.0/12"), ("support", "203.0.113.0/24")):
        egress = policies[f"connectors-{group}"]["spec"]["egress"]
        blocks = [
            peer["ipBlock"]["cidr"]
            for rule in egress
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert blocks == [cidr], group
    kafka_rule = policies["dashboard"]["spec"]["egress"][0]
    assert kafka_rule["to"][0]["podSelector"] == {
        "matchLabels": {"strimzi.io/cluster": "dsr-kafka"}
    }
    # Prometheus may scrape the workers (serviceMonitor.enabled), on the health port only.
    (scrape,) = policies["orchestrator"]["spec"]["ingress"]
    assert scrape["ports"] == [{"port": 8080, "protocol": "TCP"}]


def _secrets_mounted(c: Container) -> set[str]:
    """The Secrets whose files this container can read (plain and projected volumes)."""
    volumes = {v["name"]: v for v in c.pod.get("volumes", [])}
    names = set()
    for mount in c.spec.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def test_signing_key_and_salt_are_mounted_only_into_the_orchestrator(helm: Helm) -> None:
    apps = _app_containers(helm.template(PRODUCTION_VALUES))
    assert set(apps) == {"orchestrator", "connectors-default", "connectors-support", "dashboard"}
    holders = {name for name, c in apps.items() if "dsr-signing-keys" in _secrets_mounted(c)}
    assert holders == {"orchestrator"}
    assert apps["orchestrator"].env()["DSR_KEYS_DIR"]["value"] == "/etc/dsr/keys"
    # The dashboard's keys directory holds the download-link key alone.
    dashboard = apps["dashboard"]
    keys = next(v for v in dashboard.pod["volumes"] if v["name"] == "keys")
    assert keys["secret"]["items"] == [{"key": "download-token.key", "path": "download-token.key"}]
    assert dashboard.env()["DSR_KEYS_DIR"]["value"] == "/etc/dsr/keys"


def test_keys_never_sit_on_the_shared_volume(helm: Helm) -> None:
    error = helm.template_error(sets={"persistence.enabled": "true"})
    assert "secrets.signingKeys.existingSecret" in error


def test_dashboard_reads_the_data_volume_read_only_and_listens_on_every_interface(
    helm: Helm,
) -> None:
    dashboard = _app_containers(helm.template(PRODUCTION_VALUES))["dashboard"]
    data = {m["mountPath"]: m for m in dashboard.spec["volumeMounts"] if m["name"] == "data"}
    assert data["/var/lib/dsr"].get("readOnly") is True
    # Only the download codes (attempts are counted) are writable, as a sub-directory.
    assert data["/var/lib/dsr/delivery-codes"]["subPath"] == "delivery-codes"
    assert not data["/var/lib/dsr/delivery-codes"].get("readOnly")
    assert dashboard.env()["DSR_DASHBOARD_HOST"]["value"] == "0.0.0.0"


def test_every_component_has_the_bus_key_and_its_own_signing_key(helm: Helm) -> None:
    apps = _app_containers(helm.template(PRODUCTION_VALUES))
    expected_ids = {
        "orchestrator": "orchestrator",
        "connectors-default": "connectors-default",
        "connectors-support": "connectors-support",
        "dashboard": "dashboard",
    }
    for name, c in apps.items():
        env, secrets = c.env(), _secrets_mounted(c)
        assert env["DSR_BUS_KEY_FILE"]["value"] == "/etc/dsr/bus-key/bus.key", name
        assert "dsr-bus-key" in secrets, name
        assert env["DSR_PUBLISHER_ID"]["value"] == expected_ids[name], name
        assert env["DSR_PUBLISHER_KEY_FILE"]["value"] == "/etc/dsr/publisher-key/publisher.pem"
        assert f"dsr-publisher-{name}" in secrets, name
        # No component holds another's signing key.
        others = {f"dsr-publisher-{other}" for other in apps if other != name}
        assert not secrets & others, name
    # The verifiers read the publisher keys file; the dashboard, which only signs, does not.
    for name in ("orchestrator", "connectors-default", "connectors-support"):
        assert "DSR_PUBLISHER_KEYS" in apps[name].env(), name
    assert "DSR_PUBLISHER_KEYS" not in apps["dashboard"].env()


def test_each_connector_group_gets_only_its_own_credentials(helm: Helm) -> None:
    apps = _app_containers(helm.template(PRODUCTION_VALUES))

    def credentials(name: str) -> list[str]:
        return [s["secretRef"]["name"] for s in apps[name].spec.get("envFrom", [])]

    assert credentials("connectors-default") == ["dsr-credentials-default"]
    assert credentials("connectors-support") == ["dsr-credentials-support"]
    assert credentials("dashboard") == []


# The HTTP intake (issue 17): its own Deployment, Service, Ingress, Kafka user and policy.

#: The intake switched on, as an operator would for production.
INTAKE_ON = {
    "intake.enabled": "true",
    "intake.publicUrl": "https://requests.webwinkel.example",
    "intake.publisherKey.existingSecret": "dsr-intake-publisher-key",
    "intake.ingress.enabled": "true",
    "intake.ingress.hosts[0].host": "requests.webwinkel.example",
    "intake.ingress.hosts[0].paths[0].path": "/",
    "intake.ingress.hosts[0].paths[0].pathType": "Prefix",
    "intake.egress[0].cidr": "192.0.2.0/24",
    "intake.egress[0].ports[0]": "443",
    "kafka.sasl.users.intake.username": "dsr-intake",
    "kafka.sasl.users.intake.passwordSecret.name": "dsr-intake",
    "kafka.sasl.users.intake.passwordSecret.key": "password",
}


def test_intake_is_off_by_default(helm: Helm) -> None:
    names = [m["metadata"]["name"] for m in helm.template()]
    assert not [name for name in names if name.endswith("-intake")]


def test_intake_runs_with_its_own_key_kafka_user_and_probes(helm: Helm) -> None:
    manifests = helm.template(PRODUCTION_VALUES, sets=INTAKE_ON)
    intake = _app_containers(manifests)["intake"]
    assert intake.spec["args"] == ["intake"]
    env = intake.env()
    assert env["DSR_INTAKE_HOST"]["value"] == "0.0.0.0"
    assert env["DSR_INTAKE_PORT"]["value"] == "8090"
    assert env["DSR_INTAKE_PUBLIC_URL"]["value"] == "https://requests.webwinkel.example"
    # It signs as `intake` and checks HTTP callers against the publisher keys file.
    assert env["DSR_PUBLISHER_ID"]["value"] == "intake"
    assert env["DSR_PUBLISHER_KEY_FILE"]["value"].endswith("/publisher.pem")
    assert "DSR_PUBLISHER_KEYS" in env
    assert env["DSR_KAFKA_SASL_USERNAME"]["value"] == "dsr-intake"
    assert env["DSR_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dsr-intake"
    assert env["DSR_KAFKA_CLIENT_ID"]["value"].endswith("-intake")
    assert "DSR_SMTP_HOST" in env  # confirmation e-mails of the request page
    # Public-facing: no results, exports or signing keys of the orchestrator on its disk.
    assert "data" not in {m["name"] for m in intake.spec["volumeMounts"]}
    assert _secrets_mounted(intake) == {
        "dsr-intake-publisher-key",
        "dsr-publisher-keys",
        "dsr-bus-key",
        "dsr-kafka-cluster-ca-cert",
    }
    assert intake.spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert intake.spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert intake.spec["ports"] == [{"name": "http", "containerPort": 8090, "protocol": "TCP"}]


def test_intake_service_and_ingress_reach_its_port(helm: Helm) -> None:
    manifests = helm.template(PRODUCTION_VALUES, sets=INTAKE_ON)
    service = find(manifests, "Service", "dsr-dsr-orchestrator-intake")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "intake"
    ingress = find(manifests, "Ingress", "dsr-dsr-orchestrator-intake")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "requests.webwinkel.example"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "dsr-dsr-orchestrator-intake", "port": {"name": "http"}}


def test_intake_network_policy_admits_the_ingress_controller_and_reaches_only_its_hosts(
    helm: Helm,
) -> None:
    policy = _policies(helm.template(PRODUCTION_VALUES, sets=INTAKE_ON))["intake"]
    (inbound,) = policy["spec"]["ingress"]
    assert inbound["ports"] == [{"port": 8090, "protocol": "TCP"}]
    assert inbound["from"] and all("namespaceSelector" in peer for peer in inbound["from"])
    assert _egress_ports(policy) == {9093, 53, 587, 443}  # Kafka, DNS, SMTP, OpenDSR hosts
    blocks = [
        peer["ipBlock"]["cidr"]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer and peer["ipBlock"]["cidr"] != "198.51.100.25/32"  # SMTP
    ]
    assert blocks == ["192.0.2.0/24"]


def test_schema_refuses_an_unknown_intake_setting(helm: Helm) -> None:
    error = helm.template_error(sets={"intake.enabled": "true", "intake.prot": "8091"})
    assert "prot" in error
