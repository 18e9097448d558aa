# linr retrieval service: `linr serve` on a CUDA runtime base, as a non-root user.
#
#   docker build -t linr .
#   docker run --gpus all -p 8080:8080 -v $PWD/idx:/data/idx:ro linr /data/idx
#
# Configure with LINR_* variables (docs/service.md); arguments after the image name go to
# `linr serve`. Without a GPU the same image serves from the CPU (LINR_DEVICE=auto).
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

# torch wheels for this CUDA line; they bring their own CUDA libraries and Triton.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_SPEC="torch>=2.3"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/linr \
    PATH=/opt/linr/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/linr \
    && pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

# Dependencies change less often than code: install the package last.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY linr ./linr
COPY service ./service
COPY ingest ./ingest
RUN pip install ".[service,ingest]" && rm -rf /src

RUN useradd --system --uid 10001 --create-home --home-dir /home/linr linr \
    && mkdir -p /var/lib/linr \
    && chown linr /var/lib/linr
USER linr
WORKDIR /home/linr

ENV LINR_HOST=0.0.0.0 \
    LINR_PORT=8080
EXPOSE 8080
VOLUME ["/var/lib/linr"]

# /healthz is 200 while the process lives; readiness (/readyz) is for load balancers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python3 -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LINR_PORT', '8080'), timeout=2)"

# SIGTERM stops uvicorn gracefully: the lifespan writes the final snapshot
# (with LINR_SNAPSHOT_DIR), so give `docker stop` time for it (-t / stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["linr", "serve"]
