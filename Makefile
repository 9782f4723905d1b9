# Makefile -- a thin wrapper over CMake/CTest for the README's two commands:
#   make run    install deps, build, serve examples/kapi.json
#   make test   install deps, build, run the whole suite
# Other targets: build check-config asan fuzz bench bench-proxy format clean.
# Knobs: WERROR=ON (CI), CMAKE_FLAGS=... (extra -D flags), JOBS, CTEST_TIMEOUT,
# DEPS=0 (skip the package check).
# It does not decide how anything is built: CMakeLists.txt does.

BUILD         ?= build
WERROR        ?= OFF
CMAKE_FLAGS   ?=
JOBS          ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_TIMEOUT ?= 300
DEPS          ?= 1
CONFIG        ?= examples/kapi.json

CTEST = ctest --output-on-failure --timeout $(CTEST_TIMEOUT) -j2 --test-dir
SANITIZER_ENV = ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_stack_use_after_return=1:strict_string_checks=1} \
                UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# $(call configure,DIR,FLAGS): run cmake only when DIR has no cache yet or the
# flags differ from the last configure (remembered in DIR/.kapi-flags). Later
# edits to CMakeLists.txt are picked up by `cmake --build` itself.
define configure
	@f='-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKAPI_WERROR=$(WERROR) $(2) $(CMAKE_FLAGS)'; \
	if [ ! -f $(1)/CMakeCache.txt ] || [ "$$(cat $(1)/.kapi-flags 2>/dev/null)" != "$$f" ]; then \
	    echo "cmake -S . -B $(1) $$f"; \
	    cmake -S . -B $(1) $$f && echo "$$f" > $(1)/.kapi-flags; \
	fi
	cmake --build $(1) -j$(JOBS)
endef

.PHONY: run test build check-config asan fuzz bench bench-proxy format clean deps deps-sanitize deps-bench

run: build
	exec $(BUILD)/core/kapi run -c $(CONFIG)

test: build
	$(CTEST) $(BUILD) --no-tests=error

build: deps
	$(call configure,$(BUILD))

check-config: build
	$(BUILD)/core/kapi check -c $(CONFIG)

asan: deps-sanitize
	$(call configure,build-asan,-DKAPI_SANITIZE=ON)
	$(SANITIZER_ENV) $(CTEST) build-asan --no-tests=error

# libFuzzer targets with ASan+UBSan (clang); the fuzz tests carry label "fuzz".
fuzz: deps-sanitize
	$(call configure,build-fuzz,-DCMAKE_C_COMPILER=clang -DKAPI_FUZZ=ON -DKAPI_SANITIZE=ON)
	$(SANITIZER_ENV) $(CTEST) build-fuzz -L fuzz --no-tests=error

bench: deps-bench build
	tests/bench/hello.sh --build $(BUILD)

bench-proxy: deps-bench build
	tests/bench/proxy.sh --build $(BUILD)

format:
	@command -v clang-format >/dev/null || { echo "make format: clang-format not found (apt-get install clang-format)"; exit 1; }
	git ls-files -z '*.c' '*.h' | xargs -0 -r clang-format -i

clean:
	rm -rf $(BUILD) build-asan build-fuzz

deps:
	@[ "$(DEPS)" = 0 ] || scripts/deps.sh
deps-sanitize:
	@[ "$(DEPS)" = 0 ] || scripts/deps.sh --sanitize
deps-bench:
	@[ "$(DEPS)" = 0 ] || scripts/deps.sh --bench
