"""Autoscaling simulation: a seeded diurnal request trace with spikes, replayed against simulated inference
replicas whose GPU utilisation comes from a queueing model, driven by the operator's real HPA step
(`yolo_operator.autoscale`). Pure and fast: no cluster, no clock, no I/O.

trace.py builds the load; model.py runs the control loop and measures it against an oracle.
"""

from benchmarks.sim.model import Outcome, SimConfig, Step, oracle_replicas, simulate
from benchmarks.sim.trace import TraceConfig, diurnal_trace

__all__ = ["Outcome", "SimConfig", "Step", "TraceConfig", "diurnal_trace", "oracle_replicas", "simulate"]
