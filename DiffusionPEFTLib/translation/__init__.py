"""Translation (PPDM-style): turn a source volume into another contrast with a bridge diffusion on puzzled tensors.

Building blocks so far: :mod:`.puzzle` (reversible space-to-channel), :mod:`.bridge` (BBDM and I2SB
marginals and the bridge sampler step), :mod:`.puzzle_loss` (puzzle-gradient loss). The translation model,
its trainer hook and the ``translate`` commands build on these.
"""
