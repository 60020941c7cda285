# Front for meson/ninja. `make run` and `make test` install what is missing first.
BUILD ?= build
CONFIG ?= config/ghasi.yaml

.PHONY: all deps build run test bench fuzz fmt fmt-check clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@if [ -f $(BUILD)/build.ninja ]; then meson setup --reconfigure $(BUILD) >/dev/null; else meson setup $(BUILD) >/dev/null; fi
	@ninja -C $(BUILD)

run: build
	$(BUILD)/src/ghasi/ghasi --config $(CONFIG) serve

test: deps
	@scripts/test.sh

bench: build
	@scripts/bench.sh

fuzz:
	@scripts/fuzz.sh

fmt:
	@scripts/fmt.sh

fmt-check:
	@scripts/fmt.sh --check

clean:
	rm -rf $(BUILD) build-asan
