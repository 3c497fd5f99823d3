# Convenience targets; the scripts are the real entry points (run as root).
.PHONY: demo demo-down demo-status test

## A one-machine demo: a Pacemaker cluster, two local kubelet nodes, the chart, both nodes joined.
demo:
	bash scripts/demo.sh up

## Undo `make demo`.
demo-down:
	bash scripts/demo.sh down

demo-status:
	bash scripts/demo.sh status

## The whole test suite (what .ci/run runs with CI=true).
test:
	bash scripts/test.sh
