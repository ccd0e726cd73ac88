# CPU image of ecgcnn. The MIT-BIH records live in the /data volume:
#   docker run --rm -v "$PWD/data:/data" ecgcnn data.records=[100,101]
# Other apps: docker run --rm -v "$PWD/data:/data" --entrypoint ecgcnn-download ecgcnn \
#   target=/data/mitdb
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the CPU wheel index: left to the project's "torch>=2.3", pip would pull the
# default PyPI wheel with its CUDA libraries (gigabytes a CPU image never uses). Installing the
# project afterwards keeps this torch because it already satisfies the requirement.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src/ src/
# The Hydra configs ship inside the package (src/ecgcnn/configs, package data).
RUN pip install --no-cache-dir .

ENV ECGCNN_DATA_DIR=/data/mitdb \
    ECGCNN_CACHE_DIR=/home/ecgcnn/.cache/ecgcnn

RUN groupadd --gid 10001 ecgcnn \
    && useradd --create-home --uid 10001 --gid 10001 ecgcnn \
    && mkdir -p /data \
    && chown 10001:10001 /data
VOLUME /data
# Numeric, so the runtime can check it is not root without reading /etc/passwd.
USER 10001:10001
# Hydra writes outputs/ (and the beat cache outputs/cache) under the working directory: in the
# volume, so results outlive the container.
WORKDIR /data

ENTRYPOINT ["ecgcnn-prepare"]
