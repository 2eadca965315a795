#!/usr/bin/env python3
"""Checks of deploy/kubernetes/, run by tests/deploy/validate-k8s.sh (which provides
kubernetes-validate and PyYAML in a venv).

1. every manifest against the Kubernetes schemas, strictly (unknown fields are errors);
2. the committed services-data.yaml is exactly what gen-data-services.sh prints for the
   StatefulSet's replicas and the ConfigMap's passive-base and passive-slice;
3. the ConfigMap's render.sh, run as the initContainer runs it, for every pod ordinal:
   no placeholder left, valid YAML, only keys that ftpgate's config structs
   (src/config/raw.rs, all deny_unknown_fields) know, the pod's own slice and the
   shared advertised address; with an ftpgate binary ($FTPGATE or target/release/ftpgate)
   also `ftpgate check` on each rendered file;
4. the slices do not overlap and are exactly the ports of the pods' data Services;
5. the StatefulSet, Services and PodDisruptionBudget agree with the config (ports, probes,
   grace period) and carry the security settings the deployment promises.

Prints one line per check and `N passed, M failed` last; exits 1 if any failed.
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.30.0")
PLACEHOLDER = re.compile(r"__[A-Z_]+__")

passed = 0
failed = 0


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")
    return ok


def check(name, fn):
    """Runs fn, which returns None (pass) or a failure description."""
    try:
        why = fn()
    except Exception as e:  # a broken manifest must fail the check, not the script
        why = f"{type(e).__name__}: {e}"
    return result(name, why is None, why or "")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def port_range(text):
    a, _, b = str(text).partition("-")
    first = int(a)
    return first, int(b) if b else first


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def raw_structs():
    """Field names of every serde struct in src/config/raw.rs, with the Raw* struct a
    field nests (None for a scalar or a list of scalars)."""
    text = (ROOT / "src" / "config" / "raw.rs").read_text()
    structs = {}
    for m in re.finditer(r"pub struct (Raw\w+) \{(.*?)\n\}", text, re.S):
        fields = {}
        for f in re.finditer(r"pub (\w+): ([^\n]+),", m.group(2)):
            nested = re.search(r"\b(Raw\w+)\b", f.group(2))
            fields[f.group(1)] = nested.group(1) if nested else None
        structs[m.group(1)] = fields
    return structs


def unknown_keys(value, struct, structs, path="", out=None):
    out = [] if out is None else out
    if isinstance(value, list):
        for i, v in enumerate(value):
            unknown_keys(v, struct, structs, f"{path}[{i}]", out)
        return out
    if not isinstance(value, dict):
        out.append(f"{path or '.'}: expected a mapping for {struct}")
        return out
    fields = structs[struct]
    for k, v in value.items():
        here = f"{path}.{k}" if path else str(k)
        if k not in fields:
            out.append(here)
        elif fields[k] is not None and v is not None:
            unknown_keys(v, fields[k], structs, here, out)
    return out


def ftpgate_binary():
    cand = os.environ.get("FTPGATE") or str(ROOT / "target" / "release" / "ftpgate")
    return cand if os.access(cand, os.X_OK) else None


def main():
    files = sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml"))

    # 1. schemas
    validator = os.environ.get("KUBERNETES_VALIDATE", "kubernetes-validate")
    for f in files:
        def schema(f=f):
            r = subprocess.run(
                [validator, "--strict", "--kubernetes-version", KUBE_VERSION, "--quiet", str(f)],
                capture_output=True, text=True)
            if r.returncode != 0:
                return (r.stdout + r.stderr).strip() or f"exit {r.returncode}"
            return None
        check(f"kubernetes-validate --strict {KUBE_VERSION}: {f.name}", schema)

    docs = {}
    for f in files:
        for d in load_all(f):
            docs[(d["kind"], d["metadata"]["name"])] = d
    sts = docs[("StatefulSet", "ftpgate")]
    cm = docs[("ConfigMap", "ftpgate")]["data"]
    replicas = sts["spec"]["replicas"]
    base, slice_ = int(cm["passive-base"]), int(cm["passive-slice"])
    external = cm["external-address"]

    # 2. the generator reproduces the committed data Services
    def generated():
        r = subprocess.run(
            ["bash", str(K8S / "gen-data-services.sh"), str(replicas), str(base), str(slice_)],
            capture_output=True, text=True)
        if r.returncode != 0:
            return f"exit {r.returncode}: {r.stderr.strip()}"
        committed = (K8S / "services-data.yaml").read_text()
        if r.stdout != committed:
            return (f"services-data.yaml differs from `gen-data-services.sh {replicas} {base} "
                    f"{slice_}`; regenerate it")
        return None
    check(f"gen-data-services.sh {replicas} {base} {slice_} reproduces services-data.yaml",
          generated)

    # 3. render every pod's config with the ConfigMap's own script
    structs = raw_structs()
    tmp = Path(tempfile.mkdtemp(prefix="ftpgate-k8s-"))
    (tmp / "render.sh").write_text(cm["render.sh"])
    (tmp / "ftpgate.yaml.tmpl").write_text(cm["ftpgate.yaml.tmpl"])

    def render(pod, out, **over):
        env = dict(os.environ, POD_NAME=pod, EXTERNAL_ADDRESS=external,
                   PASSIVE_BASE=str(base), PASSIVE_SLICE=str(slice_),
                   TEMPLATE=str(tmp / "ftpgate.yaml.tmpl"), OUT=str(out))
        env.update(over)
        return subprocess.run(["sh", str(tmp / "render.sh")], env=env,
                              capture_output=True, text=True)

    binary = ftpgate_binary()
    rendered = {}
    for n in range(replicas):
        pod = f"ftpgate-{n}"
        out = tmp / f"{pod}.yaml"
        first, last = base + slice_ * n, base + slice_ * (n + 1) - 1

        def rendered_ok(pod=pod, out=out, n=n, first=first, last=last):
            r = render(pod, out)
            if r.returncode != 0:
                return f"render.sh exit {r.returncode}: {r.stderr.strip()}"
            text = out.read_text()
            left = sorted(set(PLACEHOLDER.findall(text)))
            if left:
                return f"placeholders left: {left}"
            cfg = yaml.safe_load(text)
            rendered[n] = cfg
            bad = unknown_keys(cfg, "RawConfig", structs)
            if bad:
                return f"keys ftpgate does not know (src/config/raw.rs): {bad}"
            got = port_range(cfg["data"]["passive_ports"])
            if got != (first, last):
                return f"data.passive_ports {got}, expected {first}-{last}"
            addrs = [r["address"] for r in cfg["data"]["advertise"]]
            if addrs != [external]:
                return f"data.advertise addresses {addrs}, expected [{external}]"
            return None
        check(f"render.sh for {pod}: passive {first}-{last}, no placeholder, known keys",
              rendered_ok)
        if binary and out.exists():
            def ftpgate_check(out=out):
                r = subprocess.run([binary, "check", "-c", str(out)],
                                   capture_output=True, text=True)
                return None if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()}"
            check(f"ftpgate check -c (rendered for {pod})", ftpgate_check)
    if not binary:
        print("note: no ftpgate binary ($FTPGATE or target/release/ftpgate): "
              "`ftpgate check` on the rendered configs not run")

    def render_refuses():
        errs = []
        if render("ftpgate", tmp / "x.yaml").returncode == 0:
            errs.append("a pod name without an ordinal was rendered")
        far = (65535 - base) // slice_ + 1   # the first ordinal whose slice passes 65535
        if render(f"ftpgate-{far}", tmp / "x.yaml").returncode == 0:
            errs.append(f"ordinal {far}'s slice past port 65535 was rendered")
        if render("ftpgate-0", tmp / "x.yaml", EXTERNAL_ADDRESS="").returncode == 0:
            errs.append("an empty external-address was rendered")
        return "; ".join(errs) or None
    check("render.sh refuses a name without ordinal, a slice past 65535, no address",
          render_refuses)

    # 4. slices: disjoint, and exactly the data Services' ports
    def slices_disjoint():
        if len(rendered) != replicas:
            return "not every pod rendered"
        seen = {}
        for n, cfg in rendered.items():
            a, b = port_range(cfg["data"]["passive_ports"])
            for m, (c, d) in seen.items():
                if a <= d and c <= b:
                    return f"ftpgate-{n} {a}-{b} overlaps ftpgate-{m} {c}-{d}"
            seen[n] = (a, b)
        return None
    check(f"the {replicas} pods' passive slices do not overlap", slices_disjoint)

    data_svcs = {name: d for (kind, name), d in docs.items()
                 if kind == "Service" and name.startswith("ftpgate-data-")}

    def data_services_match():
        if sorted(data_svcs) != sorted(f"ftpgate-data-{n}" for n in range(replicas)):
            return f"data Services {sorted(data_svcs)} for {replicas} replicas"
        for n in range(replicas):
            if n not in rendered:
                return f"ftpgate-{n}'s config did not render"
            spec = data_svcs[f"ftpgate-data-{n}"]["spec"]
            if spec["selector"] != {"statefulset.kubernetes.io/pod-name": f"ftpgate-{n}"}:
                return f"ftpgate-data-{n} selects {spec['selector']}"
            if spec.get("externalTrafficPolicy") != "Local":
                return f"ftpgate-data-{n} is not externalTrafficPolicy: Local"
            ports = spec["ports"]
            names = [p["name"] for p in ports]
            if len(set(names)) != len(names) or any(len(x) > 15 for x in names):
                return f"ftpgate-data-{n}: port names not unique or longer than 15"
            if any(p["port"] != p["targetPort"] or p.get("protocol", "TCP") != "TCP"
                   for p in ports):
                return f"ftpgate-data-{n}: a port that is not TCP port == targetPort"
            a, b = port_range(rendered[n]["data"]["passive_ports"])
            if sorted(p["port"] for p in ports) != list(range(a, b + 1)):
                return f"ftpgate-data-{n}'s ports are not ftpgate-{n}'s slice {a}-{b}"
        return None
    check("data Services: one per pod, its pod only, exactly its slice", data_services_match)

    # 5. the workload agrees with the config
    cfg0 = rendered.get(0) or {}
    pod = sts["spec"]["template"]
    podspec = pod["spec"]
    main_c = next(c for c in podspec["containers"] if c["name"] == "ftpgate")
    ports = {p["name"]: p["containerPort"] for p in main_c["ports"]}

    def ports_agree():
        if not cfg0:
            return "ftpgate-0's config did not render"
        listen = int(cfg0["listeners"][0]["bind"].rsplit(":", 1)[1])
        admin = int(cfg0["admin"]["bind"].rsplit(":", 1)[1])
        if ports.get("ftp") != listen:
            return f"containerPort ftp {ports.get('ftp')} but listeners[0].bind port {listen}"
        if ports.get("admin") != admin:
            return f"containerPort admin {ports.get('admin')} but admin.bind port {admin}"
        ctl = docs[("Service", "ftpgate-control")]["spec"]
        p = ctl["ports"][0]
        if p["port"] != 21 or ports.get(p["targetPort"], p["targetPort"]) != listen:
            return f"ftpgate-control maps {p['port']} -> {p['targetPort']}, not 21 -> {listen}"
        if ctl["selector"] != pod["metadata"]["labels"]:
            return "ftpgate-control does not select the StatefulSet's pods"
        ann = pod["metadata"]["annotations"]
        if ann.get("prometheus.io/scrape") != "true" or int(ann["prometheus.io/port"]) != admin:
            return f"prometheus.io annotations {ann} do not name admin port {admin}"
        if main_c["args"][-1] != "/run/ftpgate/ftpgate.yaml":
            return f"main container runs {main_c['args']}"
        return None
    check("ports: listener, admin, control Service 21, scrape annotations agree", ports_agree)

    def probes():
        want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for probe, path in want.items():
            g = main_c[probe]["httpGet"]
            if g["path"] != path or ports.get(g["port"], g["port"]) != ports["admin"]:
                return f"{probe} is {g}, expected {path} on the admin port"
        return None
    check("probes: liveness /healthz, readiness /readyz on the admin port", probes)

    def grace():
        g = seconds(cfg0.get("timeouts", {}).get("shutdown_grace", "30s"))
        t = podspec["terminationGracePeriodSeconds"]
        return None if t > g else f"terminationGracePeriodSeconds {t} <= shutdown_grace {g}s"
    check("terminationGracePeriodSeconds above timeouts.shutdown_grace", grace)

    def security():
        psc = podspec["securityContext"]
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            return "pod seccompProfile is not RuntimeDefault"
        for c in podspec["initContainers"] + podspec["containers"]:
            sc = c["securityContext"]
            want = {"runAsNonRoot": True, "runAsUser": 65534, "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False}
            for k, v in want.items():
                if sc.get(k) != v:
                    return f"{c['name']}: securityContext.{k} is {sc.get(k)!r}, not {v!r}"
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or caps.get("add") != ["NET_BIND_SERVICE"]:
                return f"{c['name']}: capabilities {caps}"
            if not c.get("resources", {}).get("requests"):
                return f"{c['name']}: no resource requests"
        return None
    check("securityContext and resources of every container", security)

    def pdb():
        spec = docs[("PodDisruptionBudget", "ftpgate")]["spec"]
        if spec.get("maxUnavailable") != 1:
            return f"maxUnavailable {spec.get('maxUnavailable')}"
        if spec["selector"]["matchLabels"] != pod["metadata"]["labels"]:
            return "the PodDisruptionBudget does not select the StatefulSet's pods"
        return None
    check("PodDisruptionBudget: maxUnavailable 1 over the StatefulSet's pods", pdb)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a manifest too broken to look into: still end with the counts
        result("reading deploy/kubernetes", False, f"{type(e).__name__}: {e}")
        print(f"{passed} passed, {failed} failed")
        sys.exit(1)
