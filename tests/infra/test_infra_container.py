"""The trainer image: Dockerfile (hadolint, pins, non-root), build context, Cloud Build config, `make image`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from infra_stack import HADOLINT, REPO

DOCKERFILE = REPO / "containers" / "trainer" / "Dockerfile"
CLOUDBUILD = REPO / "containers" / "cloudbuild.yaml"
BUILD_SCRIPT = REPO / "containers" / "build-image.sh"
FIXTURE = REPO / "tests" / "fixtures" / "infra-outputs.json"
PYTHON = REPO / ".venv" / "bin" / "python"
IMAGE = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/trainer:${_TAG}"
# The Dockerfile's base, as make image pins it (the fakes answer this digest).
PINNED_BASE = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310@sha256:" + "cd" * 32


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_hadolint_clean():
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert json.loads(result.stdout or "[]") == [] and result.returncode == 0, result.stdout + result.stderr


def test_base_is_a_documented_vertex_pytorch_gpu_training_image():
    """Google lists PyTorch GPU training images for Python 3.10 only; the Dockerfile cites the list."""
    (base_arg,) = [
        rest for kw, rest in instructions(DOCKERFILE) if kw == "ARG" and rest.startswith("BASE_IMAGE=")
    ]
    base = base_arg.split("=", 1)[1]
    assert re.fullmatch(r"us-docker\.pkg\.dev/vertex-ai/training/pytorch-gpu\.2-\d+\.py310:latest", base), (
        base
    )
    assert "https://cloud.google.com/vertex-ai/docs/training/pre-built-containers" in DOCKERFILE.read_text()
    froms = [rest for kw, rest in instructions(DOCKERFILE) if kw == "FROM"]
    assert froms == ["${BASE_IMAGE}"]


def test_the_trainer_runs_on_the_images_python_310():
    """No 3.11-only language feature or standard-library name in the trainer (vermin), and the
    package admits 3.10; the orchestrator, which never runs in the image, may need 3.11."""
    import tomllib

    project = tomllib.loads((REPO / "trainer" / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    vermin = REPO / ".venv" / "bin" / "vermin"
    result = subprocess.run(
        [str(vermin), "--no-tips", "--violations", "--eval-annotations", "-t=3.10-", "trainer/src"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _image_pin_lists() -> tuple[set[str], dict[str, str]]:
    """The Dockerfile's PY311_ONLY names and PY310_PINS {name: version}, lower-case."""
    args = dict(rest.split("=", 1) for kw, rest in instructions(DOCKERFILE) if kw == "ARG" and "=" in rest)
    dropped = {n.lower() for n in args["PY311_ONLY"].strip('"').split("|")}
    pins = dict(p.lower().split("==") for p in args["PY310_PINS"].strip('"').split())
    return dropped, pins


def test_the_images_pins_replace_exactly_the_ones_that_need_python_311():
    """PY311_ONLY and PY310_PINS cover every pin of constraints.txt whose release (as installed
    here from those pins) does not run on 3.10; every replaced pin runs on 3.10; and each of the
    trainer's own dependencies among them gets a pinned replacement, not pip's choice."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = dict(
        line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    )
    needs_311, absent = set(), set()
    for name, version in pins.items():
        if norm(name) in ("torch", "torch-geometric"):
            continue  # the base image's own builds
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            absent.add(norm(name))  # a tool only `make mutation` installs (mutmut, coverage)
            continue
        assert dist.version == version, f"{name}: installed {dist.version}, pinned {version}"
        if not SpecifierSet(dist.metadata.get("Requires-Python") or "").contains("3.10.0"):
            needs_311.add(norm(name))
    dropped, replaced = _image_pin_lists()
    assert (dropped | set(replaced)) - absent == needs_311
    assert not dropped & set(replaced)
    trainer = importlib.metadata.distribution("zeta-swarm-trainer")
    direct = {
        norm(Requirement(r).name)
        for r in trainer.requires or []
        if "extra ==" not in r or 'extra == "data"' in r
    }
    assert direct & needs_311 <= set(replaced), "a trainer dependency would be left to pip's choice"
    assert {"numpy", "scipy", "passagemath-database-odlyzko-zeta"} <= set(replaced)


def test_runs_trainer_as_non_root():
    steps = instructions(DOCKERFILE)
    users = [(i, rest) for i, (kw, rest) in enumerate(steps) if kw == "USER"]
    assert users, "no USER: the trainer would run as root"
    last_user_at, user = users[-1]
    assert user not in {"root", "0", "0:0"}
    assert not any(kw == "RUN" for kw, _ in steps[last_user_at:]), "installs must happen before dropping root"
    assert re.search(rf"useradd .*--uid {user}\b", " ".join(rest for kw, rest in steps if kw == "RUN"))
    assert steps[-1] == ("ENTRYPOINT", '["trainer"]')


def test_pins_fit_the_base_torch_and_pip_keeps_no_cache():
    constraints = dict(
        line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    )
    runs = " ".join(rest for kw, rest in instructions(DOCKERFILE) if kw == "RUN")
    # PyG for the base image's torch 2.4, checked again after the trainer install could move it.
    (pyg,) = set(re.findall(r'"torch_geometric==([^"]+)"', runs))
    assert pyg == "2.6.1" and f"__version__ == '{pyg}'" in runs
    assert "torch-geometric" in constraints and "torch" in constraints  # what the grep below removes
    assert 'grep -v -i -E "^(torch|torch-geometric|${PY311_ONLY}|${replaced})==" constraints.txt' in runs
    assert '"./trainer[data]"' in runs  # shard 0 of `orchestrator zeros --table` is the Odlyzko table
    assert re.search(r'"pyg-lib==[0-9.]+"', runs)
    assert "data.pyg.org/whl/${TORCH_INDEX}.html" in runs
    for command in re.findall(r"pip install[^&]*", runs):
        assert "--no-cache-dir" in command, command


def _docker_excluded(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents wins."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.rstrip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out)

    parents = [str(Path(*Path(path).parts[: i + 1])) for i in range(len(Path(path).parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        if any(regex(raw.lstrip("!")).fullmatch(p) for p in parents):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_image_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [rest.split()[0] for kw, rest in instructions(DOCKERFILE) if kw == "COPY"]
    assert copied == ["constraints.txt", "trainer/", "configs/"]
    for path in (
        "constraints.txt",
        "trainer/pyproject.toml",
        "trainer/src/trainer/cli.py",
        "configs/smoke.yaml",
    ):
        assert not _docker_excluded(patterns, path), path
    from orchestrator.image_tag import IMAGE_SOURCES

    # The tag hashes what the context sends (plus the Dockerfile and this file): the same list.
    allowed = [p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")]
    assert sorted(allowed) == sorted(set(IMAGE_SOURCES) - {".dockerignore", "containers/trainer/Dockerfile"})
    for path in (
        "configs/phases/phase2.yaml",
        "configs/profiles/cloud.yaml",
        ".venv/bin/python",
        ".git/HEAD",
        "data/odlyzko/zeros.npy",
        "runs/phase2-minibatch/study.db",
        "infra/terraform.tfstate",
        "infra-outputs.json",
        "trainer/src/trainer/__pycache__/cli.cpython-311.pyc",
        "trainer/src/zeta_swarm_trainer.egg-info/PKG-INFO",
    ):
        assert _docker_excluded(patterns, path), path


def test_cloudbuild_pushes_the_tagged_trainer_image():
    config = yaml.safe_load(CLOUDBUILD.read_text())
    (step,) = config["steps"]
    assert step["name"] == "gcr.io/cloud-builders/docker"
    assert f"--tag={IMAGE}" in step["args"] and step["args"][-1] == "."
    dockerfile = next(a.split("=", 1)[1] for a in step["args"] if a.startswith("--file="))
    assert (REPO / dockerfile) == DOCKERFILE
    assert config["images"] == [IMAGE]
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"  # required with a user-managed build account
    assert "substitutions" not in config, "no defaults: a build without values must fail, not push elsewhere"


# --- make image (containers/build-image.sh) in a throwaway git repository ---------------------


@pytest.fixture
def build_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    for source in ("trainer/pyproject.toml", "configs/trainer/defaults.yaml", "configs/smoke.yaml"):
        (repo / source).parent.mkdir(parents=True, exist_ok=True)
        (repo / source).write_text(f"# {source}\n")
    (repo / "containers" / "trainer").mkdir(parents=True)
    for source in (".dockerignore", "containers/trainer/Dockerfile", "constraints.txt"):
        shutil.copy(REPO / source, repo / source)
    (repo / "configs" / "phases").mkdir()
    (repo / "configs" / "phases" / "phase2.yaml").write_text("phase: 2\n")  # not in the image
    shutil.copy(FIXTURE, repo / "infra-outputs.json")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run(
        [*git, "add", "trainer", "configs", "containers", "constraints.txt", ".dockerignore"], check=True
    )
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    return repo


def fake_bin(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding git plus the given fake tools (name -> bash body), and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("git", "dirname", "sed", "grep", "head"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def run_build(repo: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": path, "PYTHON": str(PYTHON), "HOME": str(repo.parent)}
    return subprocess.run(
        [shutil.which("bash"), str(BUILD_SCRIPT), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_image_submits_to_cloud_build(tmp_path, build_repo):
    calls = tmp_path / "gcloud-calls"
    answer = (
        'if [ "$1" = artifacts ]; then echo "$@" > '
        + str(tmp_path / "describe")
        + "; echo sha256:"
        + "cd" * 32
    )
    path = fake_bin(tmp_path, {"gcloud": f'{answer}; else printf "%s\\n" "$@" > {calls}; fi'})
    result = run_build(build_repo, path)
    assert result.returncode == 0, result.stderr
    sha = subprocess.run(
        [str(PYTHON), "-m", "orchestrator.image_tag", "--root", str(build_repo)],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", sha)
    image = f"us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer:{sha}"
    assert result.stdout.splitlines()[-1] == image
    args = calls.read_text().splitlines()
    assert args[:3] == ["builds", "submit", "."]
    assert set(args[3:]) == {
        "--project=zeta-swarm-test",
        "--region=us-central1",
        "--config=containers/cloudbuild.yaml",
        f"--substitutions=_REGION=us-central1,_REPOSITORY=zs-images,_TAG={sha},_BASE_IMAGE={PINNED_BASE}",
        "--service-account=projects/zeta-swarm-test/serviceAccounts/zs-builder@zeta-swarm-test.iam.gserviceaccount.com",
        "--gcs-source-staging-dir=gs://zs-zeta-swarm-test-staging/cloudbuild/source",
    }
    # The cloudbuild template, filled with these substitutions, is exactly the printed image.
    filled = IMAGE.replace("${_REGION}", "us-central1").replace("${PROJECT_ID}", "zeta-swarm-test")
    assert filled.replace("${_REPOSITORY}", "zs-images").replace("${_TAG}", sha) == image


def test_make_image_uses_docker_without_gcloud(tmp_path, build_repo):
    calls = tmp_path / "docker-calls"
    digest = "sha256:" + "cd" * 32
    inspect = f'if [ "$1" = image ]; then echo us-docker.pkg.dev/vertex-ai/training/x@{digest}; fi'
    path = fake_bin(tmp_path, {"docker": f'echo "$*" >> {calls}; {inspect}'})
    result = run_build(build_repo, path)
    assert result.returncode == 0, result.stderr
    image = result.stdout.splitlines()[-1]
    lines = calls.read_text().splitlines()
    assert lines[0] == "info"
    assert lines[1] == f"pull --quiet {PINNED_BASE.split('@')[0]}:latest"
    assert lines[3].startswith(
        f"build --file containers/trainer/Dockerfile --tag {image} --build-arg BASE_IMAGE={PINNED_BASE}"
    )
    assert lines[4] == f"push {image}"


def test_make_image_without_gcloud_or_docker_says_what_to_install(tmp_path, build_repo):
    result = run_build(build_repo, fake_bin(tmp_path, {}))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("make image: needs gcloud") and "Docker engine" in result.stderr


def test_make_image_refuses_uncommitted_sources(tmp_path, build_repo):
    (build_repo / "trainer" / "pyproject.toml").write_text("[project]\nname = 'changed'\n")
    result = run_build(build_repo, fake_bin(tmp_path, {"gcloud": "exit 0"}))
    assert result.returncode == 2 and "uncommitted changes" in result.stderr


def test_make_image_refuses_untracked_files_under_what_it_ships(tmp_path, build_repo):
    (build_repo / "trainer" / "stray.py").write_text("print('not committed')\n")
    result = run_build(build_repo, fake_bin(tmp_path, {"gcloud": "exit 0"}))
    assert (
        result.returncode == 2
        and "untracked files would go into the image: trainer/stray.py" in result.stderr
    )


def test_the_tag_changes_with_what_the_image_holds_and_nothing_else(tmp_path, build_repo):
    from orchestrator.image_tag import content_tag

    before = content_tag(build_repo)
    (build_repo / "configs" / "phases" / "phase2.yaml").write_text("phase: 2\nparallel: 3\n")
    (build_repo / "orchestrator.py").write_text("# an orchestrator-only change\n")
    assert content_tag(build_repo) == before
    (build_repo / "configs" / "trainer" / "defaults.yaml").write_text("# changed\n")
    assert content_tag(build_repo) != before


def test_make_image_names_a_missing_outputs_file(tmp_path, build_repo):
    result = run_build(build_repo, fake_bin(tmp_path, {"gcloud": "exit 0"}), "absent.json")
    assert result.returncode == 2
    assert (
        "infra outputs file absent.json cannot be read" in result.stderr
        and "make infra-outputs" in result.stderr
    )


def test_make_infra_outputs_writes_only_a_complete_file(tmp_path):
    fixture_text = FIXTURE.read_text()
    good = fake_bin(tmp_path, {"terraform": f"cat {FIXTURE}"})
    target = tmp_path / "out" / "infra-outputs.json"
    target.parent.mkdir()

    def make(path: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PATH=f"{path}:{os.environ['PATH']}")
        # -o install: never let this test rebuild the shared virtual environment.
        return subprocess.run(
            ["make", "-s", "-o", "install", "infra-outputs", f"INFRA_OUTPUTS={target}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert make(good).returncode == 0
    assert json.loads(target.read_text()) == json.loads(fixture_text)
    shutil.rmtree(Path(good))
    broken = fake_bin(tmp_path, {"terraform": 'echo \'{"region": {"value": "us-central1"}}\''})
    result = make(broken)
    assert result.returncode == 2 and "missing or empty setting(s) project_id" in result.stderr
    assert json.loads(target.read_text()) == json.loads(fixture_text), "a failed read must keep the old file"
    assert not Path(f"{target}.tmp").exists()


@pytest.mark.parametrize("target", ["infra-plan", "infra-apply"])
def test_plan_and_apply_refuse_to_run_without_the_provider_lock_file(tmp_path, target):
    """No infra/.terraform.lock.hcl: one line naming the file and the command that makes it, exit 2,
    and terraform never runs; with the file, the target runs terraform."""
    (tmp_path / "infra").mkdir()
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    calls = tmp_path / "terraform-calls"
    path = fake_bin(tmp_path, {"terraform": f'echo "$*" >> {calls}'})

    def make() -> subprocess.CompletedProcess:
        # A make of its own, not a sub-make of `make test` (which would print make[1]: lines).
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        env["PATH"] = f"{path}:{os.environ['PATH']}"
        return subprocess.run(["make", "-s", target], cwd=tmp_path, env=env, capture_output=True, text=True)

    result = make()
    assert result.returncode == 2 and not calls.exists()
    (line,) = [ln for ln in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", ln)]
    assert line.startswith(
        f"make {target}: infra/.terraform.lock.hcl is missing; make it with `make infra-lock`"
    )
    assert "terraform -chdir=infra providers lock -platform=linux_amd64 -platform=darwin_arm64" in line
    (tmp_path / "infra" / ".terraform.lock.hcl").write_text("# locked\n")
    assert make().returncode == 0
    assert calls.read_text().split() == ["-chdir=infra", target.removeprefix("infra-")]
