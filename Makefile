# The two commands of the README's Quick start, and their parts.
PYTHON ?= python3

# Tests run against their own stack (own data dir and ports) so a stack you
# run for real on the default ports is never touched by them. Override any of
# these on the command line, e.g. `make test TEST_PORT_PREFIX=4` for ports 49092...
TEST_HOME ?= $(CURDIR)/.stack-test
TEST_PORT_PREFIX ?= 1
TEST_ENV = STREAMAPP_HOME=$(TEST_HOME) \
	STREAMAPP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_PORT_PREFIX)9092 \
	STREAMAPP_KAFKA_CONTROLLER_PORT=$(TEST_PORT_PREFIX)9093 \
	STREAMAPP_SCHEMA_REGISTRY_URL=http://127.0.0.1:$(TEST_PORT_PREFIX)8081 \
	STREAMAPP_CLICKHOUSE_URL=http://127.0.0.1:$(TEST_PORT_PREFIX)8123

# `make bench` starts its own stack too (.stack-bench/, ports 29092/28081/28123), so it never
# touches yours or the tests'; BENCH_ARGS go to bench/throughput.py (see its --help).
BENCH_HOME ?= $(CURDIR)/.stack-bench
BENCH_PORT_PREFIX ?= 2
BENCH_ENV = STREAMAPP_HOME=$(BENCH_HOME) \
	STREAMAPP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(BENCH_PORT_PREFIX)9092 \
	STREAMAPP_KAFKA_CONTROLLER_PORT=$(BENCH_PORT_PREFIX)9093 \
	STREAMAPP_SCHEMA_REGISTRY_URL=http://127.0.0.1:$(BENCH_PORT_PREFIX)8081 \
	STREAMAPP_CLICKHOUSE_URL=http://127.0.0.1:$(BENCH_PORT_PREFIX)8123

# `make soak` too (.stack-soak/, ports 39092/38081/38123, its Prometheus on 30090, the pipeline's
# processes from 30100); SOAK_ARGS go to bench/soak.py, e.g. SOAK_ARGS="--minutes 30 --rate 2000".
SOAK_HOME ?= $(CURDIR)/.stack-soak
SOAK_PORT_PREFIX ?= 3
SOAK_ARGS ?= --minutes 30 --rate 2000
SOAK_ENV = STREAMAPP_HOME=$(SOAK_HOME) \
	STREAMAPP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(SOAK_PORT_PREFIX)9092 \
	STREAMAPP_KAFKA_CONTROLLER_PORT=$(SOAK_PORT_PREFIX)9093 \
	STREAMAPP_SCHEMA_REGISTRY_URL=http://127.0.0.1:$(SOAK_PORT_PREFIX)8081 \
	STREAMAPP_CLICKHOUSE_URL=http://127.0.0.1:$(SOAK_PORT_PREFIX)8123 \
	STREAMAPP_PROMETHEUS_URL=http://127.0.0.1:$(SOAK_PORT_PREFIX)0090

.PHONY: install demo test test-faults unit bench soak down

install:
	PYTHON=$(PYTHON) deploy/scripts/install.sh

demo: install
	streamapp pipeline up

test: install
	$(TEST_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider -m "not faults" $(PYTEST_ARGS)

# Fault runs: faults under load on the whole pipeline, on a 3-broker stack of their own (minutes each; see the README's Tests section).
test-faults: install
	$(TEST_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider -m faults $(PYTEST_ARGS)

unit: install
	$(PYTHON) -m pytest -q -m "not integration" $(PYTEST_ARGS)

bench: install
	$(BENCH_ENV) PYTHONPATH=$(CURDIR) $(PYTHON) bench/throughput.py $(BENCH_ARGS)

soak: install
	$(SOAK_ENV) PYTHONPATH=$(CURDIR) $(PYTHON) bench/soak.py --port-base $(SOAK_PORT_PREFIX)0100 $(SOAK_ARGS)

down:
	streamapp pipeline down
	streamapp stack down
