# syntax=docker/dockerfile:1.7
# The unishard worker image: Beam's Python 3.11 SDK container for the same Beam version, with unishard installed, so
# workers import pipeline, schemas and transforms without staging anything. See runners/README.md.
#
#   docker build -t REGISTRY/unishard-worker:0.1.0 .
#   docker build -t REGISTRY/unishard-worker:0.1.0 --build-arg BEAM_EXTRAS=gcp \
#       --build-context models="$HOME/.cache/huggingface/hub" .      # gs:// support, and model weights baked in
#   docker push REGISTRY/unishard-worker:0.1.0
#
# Use it with --sdk_container_image=REGISTRY/unishard-worker:0.1.0 (Dataflow; Flink, Spark and portable runners with
# --environment_type=DOCKER), or --environment_type=DOCKER --environment_config=REGISTRY/unishard-worker:0.1.0.

ARG BEAM_VERSION=2.77.0

# The model-weights cache: empty unless `--build-context models=DIR` replaces this stage with a Hugging Face hub
# cache folder (the one `unishard models fetch` fills).
FROM scratch AS models
COPY <<NOTE /README.txt
Empty unishard model cache: build with --build-context models=DIR to bake model weights into the image.
NOTE

FROM apache/beam_python3.11_sdk:${BEAM_VERSION}
ARG BEAM_VERSION
# Beam extras for the cluster's storage, comma-separated: gcp, aws, azure, hadoop.
ARG BEAM_EXTRAS=""
# unishard extras, comma-separated (see pyproject.toml).
ARG UNISHARD_EXTRAS=""
# e.g. https://download.pytorch.org/whl/cpu: CPU-only torch wheels, a much smaller image for clusters without GPUs.
# The versions must match the pins in pyproject.toml.
ARG TORCH_INDEX_URL=""
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

ENV HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HUB_CACHE=/opt/unishard/models \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/unishard/src
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY schemas/ schemas/
COPY transforms/ transforms/
COPY runners/ runners/
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; \
    fi \
 && pip install ".${UNISHARD_EXTRAS:+[$UNISHARD_EXTRAS]}" \
        ${BEAM_EXTRAS:+"apache-beam[$BEAM_EXTRAS]==$BEAM_VERSION"} \
 && python -c "import apache_beam, pipeline.assemble, schemas.config, transforms.ingest; \
assert apache_beam.__version__ == '$BEAM_VERSION', apache_beam.__version__"
COPY --from=models / /opt/unishard/models/
WORKDIR /
# The entry point stays the base image's /opt/apache/beam/boot: every runner starts SDK workers through it.
