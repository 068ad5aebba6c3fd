# efs-health-agent — common tasks. `make help` lists them.
GO        ?= go
BIN       ?= bin/efs-health-agent
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
RUN_DIR   ?= /tmp/efs-health-agent-demo-mount
RUN_ARGS  ?= --mount $(RUN_DIR) --check-interval 10s --check-timeout 2s

# Every make target builds each module against its own go.mod, as the
# module's users get it, whatever go.work a developer keeps for an editor.
export GOWORK := off

# The modules (docs/modules.md): the root, which embedders import, and the
# test-only modules beside it with their own dependencies. test/k8s (a
# Kubernetes node for make k8s-e2e) and test/k8s/e2e (its scenarios) are
# left out of vet and test: compiling Kubernetes takes longer than the whole
# suite; make k8s-e2e vets and runs them.
MODULES := $(filter-out test/k8s/ test/k8s/e2e/,$(dir $(shell git ls-files go.mod '*/go.mod')))
# for_each_module runs a shell command in every module and fails at the end
# if it failed in any, so one failing module does not hide the others.
for_each_module = status=0; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(1)) || status=1; done; exit $$status

# Pinned versions of the tools make test uses: helm (lint/template) and
# kubectl-validate (offline schema validation) for the deploy tests, and
# staticcheck. They are built through the Go module proxy into
# TOOLS_DIR/<tool>-<version>/ once; make then finds them there and builds
# nothing. staticcheck is keyed by the Go version too: it must be built by
# a Go at least as new as the code it reads.
HELM_VERSION             ?= v3.21.4
KUBECTL_VALIDATE_VERSION ?= v0.0.4
STATICCHECK_VERSION      ?= v0.8.2
GO_VERSION               := $(shell $(GO) env GOVERSION)
TOOLS_DIR                ?= $(CURDIR)/.cache/tools
HELM_BIN                 := $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm
KUBECTL_VALIDATE_BIN     := $(TOOLS_DIR)/kubectl-validate-$(KUBECTL_VALIDATE_VERSION)/kubectl-validate
STATICCHECK_BIN          := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)-$(GO_VERSION)/staticcheck
TOOL_PATH                := $(TOOLS_DIR)/helm-$(HELM_VERSION):$(TOOLS_DIR)/kubectl-validate-$(KUBECTL_VALIDATE_VERSION)

.PHONY: help build run test test-deps vet vet-portable fmt-check staticcheck lint demo bench soak fuzz collector-e2e nfs-e2e nfs-rpcs nfs-group-rpcs k8s-e2e clean image image-name image-test image-docker deploy-tools deploy-sync

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the static agent binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/efs-health-agent

run: build ## run the agent on a local directory; see http://localhost:9910/healthz/mounts
	mkdir -p $(RUN_DIR)
	$(BIN) $(RUN_ARGS)

test: test-deps vet vet-portable fmt-check staticcheck ## install what the tests need (see test-deps), then vet, gofmt, staticcheck and every test of every module with the race detector (root and /dev/fuse for the fault-fs tests)
	@$(call for_each_module,PATH="$(TOOL_PATH):$$PATH" $(GO) test -race -count=1 -timeout 12m ./...)

vet: ## go vet in every module (also the NFS test bed's guest side, built with the nfsguest tag)
	@$(call for_each_module,$(GO) vet ./...)
	$(GO) vet -tags nfsguest ./test/nfs

vet-portable: ## go vet for macOS: the modules build off Linux (the checks then fail as unsupported; Linux-only tests carry build tags)
	@$(call for_each_module,GOOS=darwin $(GO) vet ./...)

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

staticcheck: $(STATICCHECK_BIN) ## staticcheck in every module, at the pinned version
	@$(call for_each_module,$(STATICCHECK_BIN) ./...)

lint: vet vet-portable fmt-check staticcheck ## vet (also for macOS), gofmt and staticcheck

FUZZTIME ?= 3m

fuzz: ## run every fuzz target for FUZZTIME each (default 3m); new findings land in testdata/fuzz
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./cmd/efs-health-agent
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/discovery
	$(GO) test -run '^$$' -fuzz '^FuzzHostileMountPaths$$' -fuzztime $(FUZZTIME) ./httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzMetricsMountPaths$$' -fuzztime $(FUZZTIME) ./exporters
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime $(FUZZTIME) ./internal/pathesc

clean: ## remove build output
	rm -rf bin

demo: build ## scripted fault timeline on a FUSE mount (needs root and /dev/fuse)
	$(GO) run ./internal/dev/demo -agent $(BIN)

bench: ## run the benchmark suite (root, a few minutes) and rewrite BENCHMARKS.md
	$(GO) run ./internal/dev/bench -out BENCHMARKS.md

soak: build ## minutes-long soak with rotating faults and hung mounts, a 100,000-path churn, then hostile load in a 128 MiB cgroup; figures go to BENCHMARKS.md (root)
	CHURN_MOUNTS=100000 $(GO) test -count=1 -run TestChurn -v ./agent
	$(GO) run ./internal/dev/soak -duration $${SOAK_DURATION:-3m} -hostile $${SOAK_HOSTILE_DURATION:-1m} -agent $(BIN) -note "$${SOAK_NOTE:-}" -out BENCHMARKS.md

NFS_RUN   ?=

# The NFS test bed's Debian packages: QEMU, the kernel NFS server's tools,
# tc, a static busybox for the guest's initramfs and a kernel in /boot with its modules.
nfs-e2e: ## the agent against the kernel's NFSv4.1 client and servers in a QEMU guest (root; installs its Debian packages as root; NFS_RUN=Partition runs one scenario)
	@$(call apt_need,qemu-system-x86_64:qemu-system-x86 rpc.nfsd:nfs-kernel-server tc:iproute2 \
		$$(dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || echo no-static-busybox:busybox-static) \
		$$(ls /boot/vmlinuz-* >/dev/null 2>&1 || echo no-kernel:linux-image-amd64))
	NFS_E2E=1 NFS_RUN='$(NFS_RUN)' $(GO) test -count=1 -v -timeout 16m -run '^TestNFS$$' ./test/nfs

nfs-rpcs: ## the NFS RPCs of one check, by operation, measured in the NFS test bed (root)
	$(MAKE) nfs-e2e NFS_RUN=RPCCost

nfs-group-rpcs: ## round trips per interval of 10 mounts of one export, plain and trunked, grouping off and on (root; docs/grouping.md)
	$(MAKE) nfs-e2e NFS_RUN=GroupRPCs

# make k8s-e2e: the components of the node, built from the versions pinned
# in test/k8s/go.mod (the first build is slow, later ones reuse Go's build
# cache), the agent's image (make image), the node's pause image and the
# stand-in EFS CSI driver's three images (test/k8s/cmd/csi-standin, one
# binary under each upstream image's entrypoint).
K8S_E2E_BIN ?= $(CURDIR)/bin/k8s-e2e
K8S_E2E_RUN ?=

k8s-e2e: image $(HELM_BIN) ## the image and the chart on a one-node Kubernetes cluster of real components: kubelet, containerd, apiserver on kine (root; installs containerd, runc and the CNI plugins as root; K8S_E2E_RUN=DaemonSet runs one scenario)
	@$(call apt_need,containerd:containerd runc:runc \
		$$([ -x /usr/lib/cni/bridge ] || echo no-cni-plugins:containernetworking-plugins))
	cd test/k8s && $(GO) build -trimpath -ldflags '-s -w' -o $(K8S_E2E_BIN)/kubenode ./cmd/kubenode
	cd test/k8s && $(GO) test -trimpath -count=1 ./csistandin/... ./cmd/csi-standin
	GOWORK=off $(GO) -C internal/dev/image run . -C $(CURDIR)/test/k8s/e2e -name k8s-e2e.local/pause:static \
	    -platform linux/$$($(GO) env GOARCH) -gobuild ./cmd/pause:/pause -entrypoint /pause \
	    -out $(K8S_E2E_BIN)/pause.oci.tar
	for i in aws-efs-csi-driver:v3.4.1:/bin/aws-efs-csi-driver csi-node-driver-registrar:v2.17.0:/csi-node-driver-registrar \
	    livenessprobe:v2.19.0:/livenessprobe; do set -- $$(echo $$i | tr : ' '); \
	  GOWORK=off $(GO) -C internal/dev/image run . -C $(CURDIR)/test/k8s -name k8s-e2e.local/$$1:$$2-standin \
	    -platform linux/$$($(GO) env GOARCH) -gobuild ./cmd/csi-standin:$$3 -entrypoint $$3 \
	    -out $(K8S_E2E_BIN)/csi/$$1.oci.tar || exit 1; done
	cd test/k8s/e2e && $(GO) vet ./...
	cd test/k8s/e2e && K8S_E2E_KUBENODE=$(K8S_E2E_BIN)/kubenode K8S_E2E_PAUSE_IMAGE=$(K8S_E2E_BIN)/pause.oci.tar \
	    K8S_E2E_AGENT_IMAGE=$(CURDIR)/$(IMAGE_OUT) K8S_E2E_HELM=$(HELM_BIN) \
	    K8S_E2E_CSI_IMAGES=$(K8S_E2E_BIN)/csi \
	    $(GO) test -count=1 -v -timeout 40m -run '$(K8S_E2E_RUN)' .

collector-e2e: ## build a minimal OTel Collector (slow the first time), validate otel-collector/config.yaml and run the agent through it
	otel-collector/e2e.sh

# The image. Its tag is the chart's appVersion, so the chart's default
# image (repository efs-health-agent, tag appVersion) names what `make image`
# builds; the binary inside reports VERSION. IMAGE_TOOL is the docker-free
# OCI image builder (internal/dev/image, a module of its own).
APP_VERSION      := $(shell sed -n 's/^appVersion:[[:space:]]*//p' deploy/helm/efs-health-agent/Chart.yaml | tr -d "\"' ")
IMAGE_REPOSITORY ?= efs-health-agent
IMAGE            ?= $(IMAGE_REPOSITORY):$(APP_VERSION)
IMAGE_PLATFORMS  ?= linux/amd64,linux/arm64
IMAGE_OUT        ?= bin/image/efs-health-agent.oci.tar
IMAGE_TOOL        = GOWORK=off $(GO) -C internal/dev/image run . -C $(CURDIR)
IMAGE_REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit time: the image's created time and every file's mtime, so the
# same commit gives the same digest.
IMAGE_CREATED    ?= $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
CA_CERTIFICATES  ?= /etc/ssl/certs/ca-certificates.crt

image: ## OCI image archive IMAGE_OUT for linux/amd64 and linux/arm64, without docker, reproducible (named IMAGE, default efs-health-agent:<chart appVersion>)
	@test -r $(CA_CERTIFICATES) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ echo "installing the Debian package ca-certificates"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null; }
	@test -r $(CA_CERTIFICATES) || { echo "$(CA_CERTIFICATES) is missing: apt-get install ca-certificates"; exit 1; }
	$(IMAGE_TOOL) -name '$(IMAGE)' -platform '$(IMAGE_PLATFORMS)' \
		-gobuild ./cmd/efs-health-agent:/efs-health-agent -ldflags '$(LDFLAGS)' \
		-file $(CA_CERTIFICATES):/etc/ssl/certs/ca-certificates.crt:0644 -dir /tmp:1777 \
		-entrypoint /efs-health-agent -user 0:0 -port 9910/tcp \
		-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		-env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		-created '$(IMAGE_CREATED)' \
		-annotation org.opencontainers.image.title=efs-health-agent \
		-annotation 'org.opencontainers.image.description=Health checks of the EFS (NFS) mounts on every Kubernetes node' \
		-annotation org.opencontainers.image.source=https://github.com/efs-health-agent/efs-health-agent \
		-annotation org.opencontainers.image.url=https://github.com/efs-health-agent/efs-health-agent \
		-annotation 'org.opencontainers.image.version=$(VERSION)' \
		-annotation 'org.opencontainers.image.revision=$(IMAGE_REVISION)' \
		-annotation 'org.opencontainers.image.created=$(IMAGE_CREATED)' \
		-out $(IMAGE_OUT)

image-name: ## print the name `make image` gives the image (IMAGE)
	@echo '$(IMAGE)'

image-test: ## the image builder's tests: two builds, one digest; both platforms; config, annotations, CA file; the amd64 binary runs
	$(GO) -C internal/dev/image test -count=1 -timeout 20m ./...

image-docker: ## docker build IMAGE from deploy/Dockerfile (for machines with docker)
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) .

$(HELM_BIN):
	GOBIN=$(@D) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
$(KUBECTL_VALIDATE_BIN):
	GOBIN=$(@D) $(GO) install sigs.k8s.io/kubectl-validate@$(KUBECTL_VALIDATE_VERSION)
$(STATICCHECK_BIN):
	GOBIN=$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

deploy-tools: $(HELM_BIN) $(KUBECTL_VALIDATE_BIN) $(STATICCHECK_BIN) ## build helm, kubectl-validate and staticcheck at their pinned versions into TOOLS_DIR (once)

# apt_need installs the Debian packages of the commands that are missing,
# given as command:package pairs: with apt-get as root, else it names them
# (the tests that need them skip, and fail when CI is set).
apt_need = missing=; for p in $(1); do command -v $${p%%:*} >/dev/null 2>&1 || missing="$$missing $${p\#*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages:$$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "not installed (apt-get install$$missing as root):$$missing"; fi

# The Debian packages make test runs: promtool (rules tests in deploy/) and
# the Prometheus server (test/e2e) from prometheus, and a headless chromium
# (the status page test in httpapi). The FUSE tests mount directly as root
# and need no fuse3.
test-deps: deploy-tools ## install what make test runs: the pinned Go tools (deploy-tools) and, as root, the Debian packages prometheus and chromium
	@$(call apt_need,promtool:prometheus prometheus:prometheus chromium:chromium)

deploy-sync: ## copy deploy/prometheus/rules.yaml and the dashboard into the PrometheusRule and the Helm chart
	sed '/^spec:$$/q' deploy/kustomize/base/prometheusrule.yaml > deploy/kustomize/base/prometheusrule.yaml.new
	sed -n '/^groups:/,$$p' deploy/prometheus/rules.yaml | sed 's/^./  &/' >> deploy/kustomize/base/prometheusrule.yaml.new
	mv deploy/kustomize/base/prometheusrule.yaml.new deploy/kustomize/base/prometheusrule.yaml
	cp deploy/prometheus/rules.yaml deploy/helm/efs-health-agent/files/rules.yaml
	cp deploy/kustomize/base/grafana/efs-health-agent.json deploy/helm/efs-health-agent/files/efs-health-agent.json
