# efs-health-agent — common tasks. `make help` lists them.
GO        ?= go
BIN       ?= bin/efs-health-agent
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
RUN_DIR   ?= /tmp/efs-health-agent-demo-mount
RUN_ARGS  ?= --mount $(RUN_DIR) --check-interval 10s --check-timeout 2s

.PHONY: help build run test vet vet-portable fmt-check staticcheck lint demo bench soak fuzz collector-e2e nfs-e2e nfs-rpcs k8s-e2e clean image image-name image-test image-docker deploy-tools deploy-sync

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the static agent binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/efs-health-agent

run: build ## run the agent on a local directory; see http://localhost:9910/healthz/mounts
	mkdir -p $(RUN_DIR)
	$(BIN) $(RUN_ARGS)

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

test: vet vet-portable fmt-check staticcheck ## vet, gofmt, staticcheck and every test with the race detector (needs root and /dev/fuse for the fault-fs tests)
	$(GO) test -race -count=1 -timeout 12m ./...

vet: ## go vet (also the NFS test bed's guest side, built with the nfsguest tag)
	$(GO) vet ./...
	$(GO) vet -tags nfsguest ./test/nfs

vet-portable: ## go vet for macOS: the module builds off Linux (the checks then fail as unsupported; Linux-only tests carry build tags)
	GOOS=darwin $(GO) vet ./...

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

staticcheck: ## staticcheck, pinned version fetched through the module proxy
	$(GO) run $(STATICCHECK) ./...

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

nfs-e2e: ## the agent against the kernel's NFSv4.1 client and servers in a QEMU guest (root; NFS_RUN=Partition runs one scenario)
	NFS_E2E=1 NFS_RUN='$(NFS_RUN)' $(GO) test -count=1 -v -timeout 12m -run '^TestNFS$$' ./test/nfs

nfs-rpcs: ## the NFS RPCs of one check, by operation, measured in the NFS test bed (root)
	$(MAKE) nfs-e2e NFS_RUN=RPCCost

# make k8s-e2e: the components of the node, built from the versions pinned
# in test/k8s/go.mod (the first build is slow, later ones reuse Go's build
# cache), the agent's image (make image), the node's pause image and the
# stand-in EFS CSI driver's three images (test/k8s/cmd/csi-standin, one
# binary under each upstream image's entrypoint).
K8S_E2E_BIN ?= $(CURDIR)/bin/k8s-e2e
K8S_E2E_RUN ?=
HELM        ?= $(shell command -v helm 2>/dev/null || echo $$($(GO) env GOPATH)/bin/helm)

k8s-e2e: image ## the image and the chart on a one-node Kubernetes cluster of real components: kubelet, containerd, apiserver on kine (root; K8S_E2E_RUN=DaemonSet runs one scenario)
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
	cd test/k8s/e2e && K8S_E2E_KUBENODE=$(K8S_E2E_BIN)/kubenode K8S_E2E_PAUSE_IMAGE=$(K8S_E2E_BIN)/pause.oci.tar \
	    K8S_E2E_AGENT_IMAGE=$(CURDIR)/$(IMAGE_OUT) K8S_E2E_HELM=$(HELM) \
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

# Pinned versions of the tools the deploy tests use (helm lint/template,
# offline schema validation); installed through the Go module proxy.
HELM_VERSION             ?= v3.21.4
KUBECTL_VALIDATE_VERSION ?= v0.0.4

deploy-tools: ## install helm and kubectl-validate at their pinned versions (go install, into GOPATH/bin)
	$(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	$(GO) install sigs.k8s.io/kubectl-validate@$(KUBECTL_VALIDATE_VERSION)

deploy-sync: ## copy deploy/prometheus/rules.yaml and the dashboard into the PrometheusRule and the Helm chart
	sed '/^spec:$$/q' deploy/kustomize/base/prometheusrule.yaml > deploy/kustomize/base/prometheusrule.yaml.new
	sed -n '/^groups:/,$$p' deploy/prometheus/rules.yaml | sed 's/^./  &/' >> deploy/kustomize/base/prometheusrule.yaml.new
	mv deploy/kustomize/base/prometheusrule.yaml.new deploy/kustomize/base/prometheusrule.yaml
	cp deploy/prometheus/rules.yaml deploy/helm/efs-health-agent/files/rules.yaml
	cp deploy/kustomize/base/grafana/efs-health-agent.json deploy/helm/efs-health-agent/files/efs-health-agent.json
