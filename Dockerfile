# syntax=docker/dockerfile:1.7
# The standard images of Yolo Operator, one Dockerfile, three targets:
#   operator  slim Python with the operator package only (no torch): `yolo-operator controller`
#   workload  CUDA runtime + PyTorch + Ultralytics + OpenCV headless + nvidia-ml-py: `yolo-workload VERB`
#   dev       workload + JupyterLab + OpenSSH server, started by `yolo-workload dev`
# Every Python package comes from requirements.lock (the file CI installs from), so what runs in a pod is
# exactly what the tests ran. Build: see docs/install.md.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

# ---------------------------------------------------------------------------------------------------------------
# operator: build a venv in a throw-away stage, copy only the venv into the final image.
FROM ${PYTHON_IMAGE} AS operator-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY operator/ operator/
# The operator image carries no workload code: an empty folder satisfies the package finder.
RUN mkdir workloads \
 && /opt/venv/bin/pip install --constraint requirements.lock . \
 && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE} AS operator
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
# A fixed numeric UID, so `runAsNonRoot` can be verified by the kubelet without reading /etc/passwd.
RUN groupadd --gid 10001 yolo \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/yolo --shell /usr/sbin/nologin yolo
COPY --from=operator-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/yolo
# 8080: Kopf's liveness endpoint (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["yolo-operator"]
CMD ["controller"]

# ---------------------------------------------------------------------------------------------------------------
# workload: PyTorch's wheels bring their own CUDA libraries; the CUDA runtime base brings the matching driver
# compatibility setup (NVIDIA_* env, ld config) the NVIDIA container toolkit expects.
FROM ${CUDA_IMAGE} AS workload-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 DEBIAN_FRONTEND=noninteractive
# Ubuntu's own Python 3.12; package versions float within the pinned Ubuntu release (see docs/install.md).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY operator/ operator/
COPY workloads/ workloads/
# Ultralytics depends on the GUI build of OpenCV; a server image wants the headless build of the same version,
# so swap it after the locked install (both provide the `cv2` module).
RUN /opt/venv/bin/pip install --constraint requirements.lock ".[workloads]" \
 && opencv_version="$(sed -n 's/^opencv-python==//p' requirements.lock)" \
 && test -n "${opencv_version}" \
 && /opt/venv/bin/pip uninstall --yes opencv-python \
 && /opt/venv/bin/pip install --no-deps "opencv-python-headless==${opencv_version}"

FROM ${CUDA_IMAGE} AS workload
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
ENV DEBIAN_FRONTEND=noninteractive
# libglib and libgomp: what OpenCV headless and torch still link against; tini: reaps dataloader workers.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libglib2.0-0t64 libgomp1 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 yolo \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/yolo --shell /bin/bash yolo \
 && mkdir -p /data /output /models \
 && chown 10001:10001 /data /output /models
COPY --from=workload-build /opt/venv /opt/venv
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
# `serve` listens on 8080 (HTTP + /metrics); `train` exports metrics on 9090.
EXPOSE 8080 9090
# No HEALTHCHECK: one image runs batch verbs (tune, train) that expose no endpoint. Kubernetes probes of the
# serve Deployment (rendered by the operator) check /v2/health/ready instead.
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "yolo-workload"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------
# dev: the workload image plus an interactive notebook and shell (`yolo-workload dev`, docs/install.md).
FROM workload AS dev
USER 0:0
COPY requirements.lock /tmp/requirements.lock
# openssh-server only for its sshd binary: its package-generated host keys are deleted so no private key ships
# in the image; `yolo-workload dev` generates fresh ones at start in a writable folder.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server openssh-client git \
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && /opt/venv/bin/pip install --no-cache-dir --constraint /tmp/requirements.lock jupyterlab \
 && mkdir -p /workspace \
 && chown 10001:10001 /workspace
USER 10001:10001
WORKDIR /workspace
# 8888: JupyterLab (token required); 2222: sshd (keys only), both as UID 10001.
EXPOSE 8888 2222
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=4)"]
CMD ["dev"]
