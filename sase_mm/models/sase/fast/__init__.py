"""Optimised restatements of the SASE maths, each beside its plain version.

SASE (arXiv 2411.08333). ``batched_edges`` evaluates a search edge's seven
candidates as a few stacked products (plain version: ``MixedOp`` running
them one by one); ``fused`` runs the fixed block as one autograd node with a
closed-form input gradient (plain version: ``SASE.forward_generic``);
``kernels`` loads the compiled CPU kernels (``csrc/``) the fused node uses.
Each has an equivalence test under ``tests/models/sase/fast/``.
"""
