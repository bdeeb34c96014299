#!/usr/bin/env bash
# Build and push the trainer image IMAGE_REPOSITORY/trainer:TAG, reading the repository,
# project, region, staging bucket and builder account from the infra outputs file.
# Cloud Build (gcloud) when installed, else a local Docker engine; with neither, say what to install.
#
# Usage: containers/build-image.sh [INFRA_OUTPUTS_FILE]   (default infra-outputs.json)
# Env:   PYTHON  interpreter with the orchestrator package (default .venv/bin/python)
set -euo pipefail

outputs="${1:-infra-outputs.json}"
python="${PYTHON:-.venv/bin/python}"

fail() {
    echo "make image: $*" >&2
    exit 2
}

# One reader for the outputs file, so its errors read the same here as in the orchestrator.
output() { "$python" -m orchestrator.infra_outputs "$outputs" --get "$1"; }

"$python" -m orchestrator.infra_outputs "$outputs" > /dev/null
repository="$(output image_repository)"
project="$(output project_id)"
region="$(output region)"

# The tag is the content hash of exactly what goes into the image (orchestrator.image_tag), the
# tag `orchestrator swarm` looks for. Those sources must be committed and hold no untracked file,
# so the tag also names a commit's worth of sources that anyone can rebuild.
mapfile -t sources < <("$python" -m orchestrator.image_tag --sources)
tag="$("$python" -m orchestrator.image_tag --root .)"
shown="${sources[*]}"
if ! git diff --quiet HEAD -- "${sources[@]}"; then
    fail "uncommitted changes under ${shown// /, }; commit them so the tag ${tag} names what the image holds"
fi
untracked="$(git ls-files --others --exclude-standard -- "${sources[@]}")"
if [[ -n "${untracked}" ]]; then
    fail "untracked files would go into the image: ${untracked//$'\n'/, }; commit or remove them"
fi
image="${repository}/trainer:${tag}"

# The base is published under a moving tag (:latest); the build uses the digest it has now and
# records it in the image's org.opencontainers.image.base.name label, so the image can be rebuilt
# from exactly that base (--build-arg BASE_IMAGE=...@sha256:...).
base="$(sed -n 's/^ARG BASE_IMAGE=//p' containers/trainer/Dockerfile)"
[[ -n "${base}" ]] || fail "containers/trainer/Dockerfile has no ARG BASE_IMAGE=... default"
pin() { # stdin: a digest (sha256:...) or REPO@sha256:...; prints BASE_WITHOUT_TAG@sha256:...
    local digest
    digest="$(grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)"
    [[ -n "${digest}" ]] || fail "could not resolve the digest of the base image ${base}"
    echo "${base%:*}@${digest}"
}

if command -v gcloud > /dev/null 2>&1; then
    repository_id="${repository##*/}"
    [[ "${repository}" == "${region}-docker.pkg.dev/${project}/${repository_id}" ]] \
        || fail "image_repository ${repository} is not ${region}-docker.pkg.dev/${project}/REPO, which containers/cloudbuild.yaml pushes to"
    staging="$(output staging_bucket)"
    builder="$(output builder_service_account)"
    pinned="$(gcloud artifacts docker images describe "${base}" --format='value(image_summary.digest)' | pin)"
    echo "Building ${image} from ${pinned} with Cloud Build in ${project}/${region} (about 10-20 minutes)..." >&2
    gcloud builds submit . \
        --project="${project}" \
        --region="${region}" \
        --config=containers/cloudbuild.yaml \
        --substitutions="_REGION=${region},_REPOSITORY=${repository_id},_TAG=${tag},_BASE_IMAGE=${pinned}" \
        --service-account="projects/${project}/serviceAccounts/${builder}" \
        --gcs-source-staging-dir="gs://${staging}/cloudbuild/source"
elif docker info > /dev/null 2>&1; then
    docker pull --quiet "${base}" > /dev/null
    pinned="$(docker image inspect --format '{{index .RepoDigests 0}}' "${base}" | pin)"
    echo "Building ${image} from ${pinned} with the local Docker engine..." >&2
    docker build --file containers/trainer/Dockerfile --tag "${image}" --build-arg "BASE_IMAGE=${pinned}" \
        --label "org.opencontainers.image.revision=${tag}" .
    docker push "${image}"
else
    fail "needs gcloud (Google Cloud CLI: https://cloud.google.com/sdk/docs/install) to build with Cloud Build, or a running Docker engine"
fi
echo "${image}"
