"""The computations below both `kilnet.ops` and `kilnet.layers`: convolutions as functions of
arrays (`conv`, `conv_transpose`) and the bridge to oneDNN's CPU kernels through XLA's FFI
(`onednn`, with `onednn_conv`, `onednn_matmul` and `onednn_batch_norm` wrapping its handlers
with their gradients). Nothing here imports ops, layers or models, so both can use them.
"""
