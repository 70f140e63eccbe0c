# The standard images of Yolo Operator, one Dockerfile, three targets:
#   operator  slim Python with the operator package and the shared contract (no torch): `yolo-operator controller`
#   workload  CUDA runtime + PyTorch + Ultralytics + OpenCV headless + nvidia-ml-py: `yolo-workload VERB`
#   dev       workload + JupyterLab + OpenSSH server, started by `yolo-workload dev`
# Every Python package comes from requirements.lock (the file CI installs from), so what runs in a pod is
# exactly what the tests ran. Build: `make images` (any Docker engine; it also works with no registry reachable),
# or plain `docker build --target ...` (docs/install.md).
#
# Layer order keeps rebuilds cheap: system packages, then the locked dependencies (read from pyproject.toml and
# requirements.lock only), then the sources, then the labels that change on every build.
#
# Bases: the defaults are the real ones. Any Debian- or Ubuntu-based image with python3 works for both
# (`make images` builds a Debian bookworm one from Debian's packages where no registry can be reached).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

# ---------------------------------------------------------------------------------------------------------------
# deps-spec: the dependency lists of pyproject.toml, extracted so that the install layers below are keyed by them
# and the lock only (an edit to pyproject's tool settings does not re-install PyTorch).
FROM ${PYTHON_IMAGE} AS deps-spec
WORKDIR /src
COPY pyproject.toml ./
COPY scripts/image-deps.sh /usr/local/bin/image-deps
RUN sh /usr/local/bin/image-deps spec /deps

# ---------------------------------------------------------------------------------------------------------------
# operator: build a venv in a throw-away stage, copy only the venv into the final image.
# .build-ca/ holds extra CA certificates for TLS-intercepting proxies (empty by default; `make images` puts the
# host's bundle there when it has one). They are used only while building and never reach a final image.
FROM ${PYTHON_IMAGE} AS operator-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY .build-ca/ /tmp/build-ca/
COPY scripts/image-deps.sh /usr/local/bin/image-deps
COPY requirements.lock ./
COPY --from=deps-spec /deps/operator.txt /tmp/deps.txt
RUN image-deps install /opt/venv /tmp/deps.txt
# The operator imports yolo_workloads.contract (the operator<->workload contract), so both packages ship; the
# workloads' heavy dependencies (torch, Ultralytics) do not.
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import yolo_operator.main, yolo_workloads.contract"

FROM ${PYTHON_IMAGE} AS operator
# A fixed numeric UID, so `runAsNonRoot` can be verified by the kubelet without reading /etc/passwd.
RUN groupadd --gid 10001 yolo \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/yolo --shell /usr/sbin/nologin yolo
COPY --from=operator-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/yolo
# Smoke check: the controller's whole import graph loads in the final image.
RUN python3 -c "import yolo_operator.main" && yolo-operator --help >/dev/null
# 8080: Prometheus metrics; 8081: Kopf's liveness endpoint (/healthz). Same defaults as operator settings.
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["yolo-operator"]
CMD ["controller"]
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="yolo-operator" \
      org.opencontainers.image.description="Kubernetes operator that tunes, trains and serves YOLOv8 on GPU pools" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Yolo Operator authors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# ---------------------------------------------------------------------------------------------------------------
# workload: PyTorch's wheels bring their own CUDA libraries; the CUDA runtime base brings the matching driver
# compatibility setup (NVIDIA_* env, ld config) the NVIDIA container toolkit expects.
# workload-deps holds only the locked dependencies (5+ GB): the final image copies that venv as one layer that
# stays the same while the sources change, then installs the project on top (a layer of a few hundred KB). A
# code change then rebuilds, pushes and loads kilobytes, not the whole venv.
FROM ${CUDA_IMAGE} AS workload-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 DEBIAN_FRONTEND=noninteractive
# The base's own python3 (3.12 on Ubuntu 24.04, 3.11 on Debian bookworm); versions float within its release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY .build-ca/ /tmp/build-ca/
COPY scripts/image-deps.sh /usr/local/bin/image-deps
COPY requirements.lock ./
COPY --from=deps-spec /deps/workloads.txt /tmp/deps.txt
# Ultralytics depends on the GUI build of OpenCV; a server image wants the headless build of the same version,
# so image-deps swaps it after the locked install (both provide the `cv2` module).
RUN image-deps install /opt/venv /tmp/deps.txt

FROM ${CUDA_IMAGE} AS workload
ENV DEBIAN_FRONTEND=noninteractive
# libglib and libgomp: what OpenCV headless and torch still link against (libglib2.0-0t64 on Ubuntu 24.04,
# libglib2.0-0 on Debian bookworm and Ubuntu 22.04); tini: reaps dataloader workers; gcc, libc6-dev and python3-dev:
# Triton (in PyTorch's CUDA wheels) compiles each kernel's launcher with them on first use, for the fused GPU
# augmentation kernel (workloads/yolo_workloads/train/gpu_augment_fused.py) and torch.compile.
# hadolint ignore=DL3008
RUN apt-get update \
 && glib="$(apt-cache show libglib2.0-0t64 >/dev/null 2>&1 && echo libglib2.0-0t64 || echo libglib2.0-0)" \
 && apt-get install -y --no-install-recommends python3 "${glib}" libgomp1 tini ca-certificates \
    gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 yolo \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/yolo --shell /bin/bash yolo \
 && mkdir -p /data /output /models \
 && chown 10001:10001 /data /output /models
COPY --from=workload-deps /opt/venv /opt/venv
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/python -c "import yolo_workloads.cli, ultralytics, torch, cv2" \
 && rm -rf /tmp/src /root/.config/Ultralytics
# YOLO_OFFLINE: Ultralytics never downloads weights, fonts or data, nor checks for updates.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/yolo
# Smoke check: the CLI and its verbs load in the final image (tini is where the entrypoint expects it). Then
# matplotlib's font list, built here once: with a fresh MPLCONFIGDIR every training pod scanned the image's fonts
# before its first plot (0.07 s of 0.18 s on the development machine). Writable by any UID, as /tmp is, so an
# arbitrary runAsUser still finds a cache folder it may use rather than a temporary one of its own.
RUN command -v tini >/dev/null && yolo-workload --help >/dev/null \
 && python -c "import matplotlib.font_manager" && test -n "$(ls /tmp/matplotlib/fontlist-*.json)" \
 && chmod 0777 /tmp/matplotlib
# `serve` listens on 8080 (HTTP + /metrics); `train` exports metrics on 9090.
EXPOSE 8080 9090
# No HEALTHCHECK: one image runs batch verbs (tune, train) that expose no endpoint. Kubernetes probes of the
# serve Deployment (rendered by the operator) check /v2/health/ready instead.
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "yolo-workload"]
CMD ["--help"]
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="yolo-workload" \
      org.opencontainers.image.description="Standard image of Yolo Operator workloads: tune, train, serve, bench YOLOv8" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Yolo Operator authors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# ---------------------------------------------------------------------------------------------------------------
# dev: the workload image plus an interactive notebook and shell (`yolo-workload dev`, docs/install.md).
FROM workload AS dev
USER 0:0
COPY .build-ca/ /tmp/build-ca/
COPY requirements.lock /tmp/requirements.lock
# openssh-server only for its sshd binary: its package-generated host keys are deleted so no private key ships
# in the image; `yolo-workload dev` generates fresh ones at start in a writable folder.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server openssh-client git \
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && if [ -s /tmp/build-ca/ca.pem ]; then export PIP_CERT=/tmp/build-ca/ca.pem; fi \
 && /opt/venv/bin/pip install --no-cache-dir --constraint /tmp/requirements.lock jupyterlab \
 && rm -rf /tmp/build-ca /tmp/requirements.lock \
 && mkdir -p /workspace \
 && chown 10001:10001 /workspace \
 && echo 'PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' > /etc/profile.d/yolo-venv.sh
USER 10001:10001
WORKDIR /workspace
# 8888: JupyterLab (token required); 2222: sshd (keys only), both as UID 10001.
EXPOSE 8888 2222
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=4)"]
CMD ["dev"]
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="yolo-workload-dev" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
