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

if command -v gcloud > /dev/null 2>&1; then
    repository_id="${repository##*/}"
    [[ "${repository}" == "${region}-docker.pkg.dev/${project}/${repository_id}" ]] \
        || fail "image_repository ${repository} is not ${region}-docker.pkg.dev/${project}/REPO, which containers/cloudbuild.yaml pushes to"
    staging="$(output staging_bucket)"
    builder="$(output builder_service_account)"
    echo "Building ${image} with Cloud Build in ${project}/${region} (about 10-20 minutes)..." >&2
    gcloud builds submit . \
        --project="${project}" \
        --region="${region}" \
        --config=containers/cloudbuild.yaml \
        --substitutions="_REGION=${region},_REPOSITORY=${repository_id},_TAG=${tag}" \
        --service-account="projects/${project}/serviceAccounts/${builder}" \
        --gcs-source-staging-dir="gs://${staging}/cloudbuild/source"
elif docker info > /dev/null 2>&1; then
    echo "Building ${image} with the local Docker engine..." >&2
    docker build --file containers/trainer/Dockerfile --tag "${image}" \
        --label "org.opencontainers.image.revision=${tag}" .
    docker push "${image}"
else
    fail "needs gcloud (Google Cloud CLI: https://cloud.google.com/sdk/docs/install) to build with Cloud Build, or a running Docker engine"
fi
echo "${image}"
