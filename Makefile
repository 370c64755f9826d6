# xs-backup — see README.md. Two commands matter on a fresh machine:
#   make demo   a local server, three laptops backing up over QUIC, a restore
#   make test   vet, staticcheck, the whole suite with -race, a fuzz smoke, the cross builds, the package test (as root)

GO       ?= go
BIN      ?= bin
FUZZTIME ?= 4s
# The bench-full school: `make bench-full LAPTOPS=300 NIGHTS=14
# SYSTEMS=rsync,rsync+ssh` runs a bigger school against the rsync baselines
# only (restic and borg make each night several times longer).
LAPTOPS  ?= 100
NIGHTS   ?= 10
SYSTEMS  ?=
CMDS     := ./cmd/xs-backupd ./cmd/xo-backup ./cmd/xs-admin
# The release version binaries and packages carry (scripts/version.sh: the
# git tag, or 0.0.0+gitREV); --version, logs and xs_build_info show it.
VERSION  ?= $(shell scripts/version.sh)
LDFLAGS  := -X github.com/xs-backup/xs-backup/internal/version.Version=$(VERSION)
# Packages: nfpm runs as a tool at a pinned version, not a module dependency.
PKGS     ?= build
NFPM     ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

.PHONY: all build demo test vet unit fuzz-smoke fuzz soak cross bench bench-full bench-load bench-morning lint clean screenshot packages package-test

all: build

# Pure Go (CGO_ENABLED=0), as the packages are built: a program linked
# against libc pays for the dynamic loader at every start (1.5-2 ms of
# xo-backup's ~5 ms start on amd64), and the laptop's timer starts it every
# 5 minutes.
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(CMDS)

demo: build
	$(GO) run ./internal/demo --bin $(BIN)

test: vet lint unit fuzz-smoke cross package-test

# The XO-1's build (386) too: int is 32 bits there, and its tests must build.
vet:
	$(GO) vet ./...
	GOARCH=386 $(GO) vet ./...

# Allocation bounds are measured again without the race detector, which
# makes sync.Pool drop buffers at random.
unit:
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -run 'BoundedMemory' ./pkg/chunk/
	$(GO) test -count=1 -timeout 10m -run 'TestBigAttack2' ./pkg/backup/ ./pkg/server/
	$(GO) test -count=1 -timeout 5m -run 'TestSchoolMorningScaled' ./bench/traffic/

# Every fuzz target, briefly (make fuzz runs them long).
fuzz-smoke:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz:
	FUZZTIME=5m scripts/fuzz.sh

# The long reliability runs (RELIABILITY.md): a school of 200 laptops for at least 35 nights and
# SOAK on an accelerated clock, then the crash loop with 40 random kills.
SOAK ?= 10m
soak:
	XS_SOAK=$(SOAK) $(GO) test -count=1 -v -run TestSoak -timeout 3h ./pkg/server/ | grep -E 'soak:|^(---|ok|FAIL)'
	XS_CRASH_RANDOM=40 $(GO) test -count=1 -v -run TestCrashLoop -timeout 1h ./e2e/ | grep -E 'rounds|^(---|ok|FAIL)'


# The laptop targets: XO-1 (386 without SSE2), XO-1.75/4 (ARMv7, arm64), PCs.
cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -o $(BIN)/linux-amd64/ $(CMDS)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o $(BIN)/linux-arm64/ $(CMDS)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -o $(BIN)/linux-armv7/ $(CMDS)
	CGO_ENABLED=0 GOOS=linux GOARCH=386 GO386=softfloat $(GO) build -o $(BIN)/linux-386-softfloat/ $(CMDS)

# Packages into $(PKGS)/: the school server's .deb (xs-backupd, xs-admin,
# the config as a conffile, the unit, the system user) for amd64 and arm64;
# the laptop's .rpm (xo-backup, xo-backup@.timer) for the XO's Fedora-based
# OS: i686 (the XO-1: 386 with GO386=softfloat) and armv7hl (XO-1.75, XO-4).
# Man pages and completions come from each program's hidden gen-docs
# command, in a build with the gendocs tag: the programs the packages ship
# do not carry it (nor cobra/doc and the Markdown renderer it needs).
packages: build
	rm -rf $(PKGS)/docs $(PKGS)/share $(PKGS)/bin $(PKGS)/docsbin $(PKGS)/*.deb $(PKGS)/*.rpm
	mkdir -p $(PKGS)
	$(GO) build -tags gendocs -o $(PKGS)/docsbin/ $(CMDS)
	@for p in xs-backupd xs-admin xo-backup; do \
	  timeout 60 $(PKGS)/docsbin/$$p gen-docs $(PKGS)/docs/$$p || exit 1; echo "packages: docs of $$p"; \
	done
	scripts/stage-docs.sh $(PKGS)/docs $(PKGS)/share
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKGS)/bin/amd64/ ./cmd/xs-backupd ./cmd/xs-admin
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKGS)/bin/arm64/ ./cmd/xs-backupd ./cmd/xs-admin
	CGO_ENABLED=0 GOOS=linux GOARCH=386 GO386=softfloat $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKGS)/bin/i686/ ./cmd/xo-backup
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKGS)/bin/arm7/ ./cmd/xo-backup
	for a in amd64 arm64; do \
	  PKG_ARCH=$$a BUILD_DIR=$(PKGS)/bin/$$a SHARE_DIR=$(PKGS)/share/server VERSION=$(VERSION) \
	    $(NFPM) pkg --packager deb --config dist/nfpm/server.yaml --target $(PKGS)/ || exit 1; \
	done
	for a in i686 arm7; do \
	  PKG_ARCH=$$a BUILD_DIR=$(PKGS)/bin/$$a SHARE_DIR=$(PKGS)/share/laptop VERSION=$(VERSION) \
	    $(NFPM) pkg --packager rpm --config dist/nfpm/laptop.yaml --target $(PKGS)/ || exit 1; \
	done

# Installs the .deb, runs it, backs up a laptop and purges it, then the
# package over its life: upgrade, remove, reinstall, odd states (root only;
# CI is root): scripts/package-test.sh, scripts/package-upgrade-test.sh.
package-test:
	GO=$(GO) BIN=$(BIN) PKGS=$(PKGS) scripts/package-test.sh
	GO=$(GO) scripts/package-upgrade-test.sh

# The micro-benchmarks, then a small whole school (bench/results/school-small.md).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./pkg/chunk/
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/
	$(GO) run ./bench/cmd/school -size small -laptops 12 -nights 4 -journal-mb 15

# The whole school at full size: results/school-full.md and the README table.
bench-full:
	$(GO) run ./bench/cmd/school -size full -laptops $(LAPTOPS) -nights $(NIGHTS) -journal-mb 20 $(if $(SYSTEMS),-systems $(SYSTEMS)) -readme bench/README.md

# 1000 laptops back up through one xs-backupd subprocess (bench/load, ~5
# minutes); writes bench/results/load.md and the load section of bench/README.md.
bench-load:
	$(GO) run ./bench/cmd/load -out bench/results/load.md -readme bench/README.md

# The school morning (bench/traffic): laptops over real minutes through an
# emulated 20 Mbit/s link, measured admission against the fixed windows and
# with a class's download; bench/results/morning.md, the plots and the
# morning section of bench/README.md. SCALE=1 is the whole 1000-laptop,
# 20-minute morning (well over an hour in all); the default is a quarter.
SCALE ?= 0.25
bench-morning:
	nice -n 10 $(GO) run ./bench/cmd/morning -scale $(SCALE) -out bench/results -readme bench/README.md

# docs/restore-page.png: what a child sees (needs chromium).
screenshot:
	XS_SCREENSHOT=$(CURDIR)/docs/restore-page.png $(GO) test -count=1 -run TestRestorePageInChromium ./e2e/

# staticcheck, pinned so that a new release cannot turn a green tree red.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN) $(PKGS)
