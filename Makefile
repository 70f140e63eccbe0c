# The commands the README names. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# Every process the tests start stays offline: Ultralytics must not reach its hub, fonts or update checks.
export YOLO_OFFLINE := 1

.PHONY: setup cluster-bin servers-bin images crds lint test test-unit test-workloads test-cluster test-e2e demo lock release clean

setup:  ## Python environment (cached by lock hash), Debian packages
	bash scripts/bootstrap.sh

cluster-bin: ## kube-apiserver, controller-manager, scheduler, kubectl, kubelet, kube-proxy, etcd, kwok, kwokctl; helm, gitops-check (cached by version)
	bash tests/cluster/controlplane/build.sh >/dev/null
	bash tests/cluster/tools/build.sh >/dev/null

servers-bin: ## MinIO, the real S3 server the remote-source tests run on loopback (Go module proxy; cached by version)
	bash tests/servers/build-minio.sh >/dev/null

images: ## operator, workload and dev images with a real Docker engine (started if none runs; layers cached)
	bash scripts/images.sh >/dev/null

crds: setup  ## regenerate crds/ from the API models
	$(BIN)/yolo-operator crds --out crds
	$(BIN)/yolo-operator crds --out manifests/base/crds

lint: setup  ## ruff, formatting, mypy --strict (operator and workloads), import-linter contracts, CRD drift
	$(BIN)/ruff check operator workloads tests benchmarks
	$(BIN)/ruff format --check operator workloads tests benchmarks
	$(BIN)/mypy operator/yolo_operator workloads/yolo_workloads
	$(BIN)/lint-imports
	$(BIN)/yolo-operator crds --out crds --check
	$(BIN)/yolo-operator crds --out manifests/base/crds --check
	python3 scripts/version.py --check

# The set-up steps run side by side (a cold machine spends them on the network, pip and Go's compiler; each is a
# no-op once cached), then lint, then every suite.
test:  ## everything CI runs
	$(MAKE) --no-print-directory -j4 setup cluster-bin servers-bin images
	$(MAKE) --no-print-directory lint
	bash scripts/run-tests.sh

test-unit: setup
	$(PY) -m pytest -m unit tests

test-workloads: setup servers-bin
	$(PY) -m pytest -m workloads tests

test-cluster: setup cluster-bin
	$(PY) -m pytest -m cluster tests

test-e2e: setup cluster-bin images
	$(PY) -m pytest -m e2e tests

demo: setup  ## the main job, no cluster: tune, train and serve the quickstart YoloTrainJob locally
	$(BIN)/yolo-operator run manifests/samples/quickstart/yolotrainjob.yaml --workdir .work/quickstart --serve

lock:  ## re-pin requirements.lock from a fresh resolve of pyproject's extras
	bash scripts/lock.sh

release:  ## make release VERSION=x.y.z: stamp the version, write dist/ (install YAML, packaged chart, Argo CD health)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z" >&2; exit 2; }
	bash scripts/release.sh $(VERSION) dist

clean:
	rm -rf .work .pytest_cache .mypy_cache .ruff_cache
