"""The per-organization Solver and the consumer side of CTI delivery.

A Solver watches its organization's tasks on-chain (eth_getLogs from a persisted cursor),
accepts pending ones, encrypts the MISP event to the consumer's key (ECIES secp256k1),
serves the ciphertext from the org's delivery endpoint to the task's consumer only, and
finishes the task with the ciphertext hash and URI. A journal (sqlite) makes every step
crash-safe and exactly once. The consumer side fetches, verifies, decrypts, validates,
stores and rates.

Public API (nothing runs at import time):
    Solver, SolverConfig          solver.daemon
    Consumer                      solver.consumer
    seed_intel, sample_event      solver.seed
    start_solvers, stop_solvers, solver_status   solver.manage
"""
