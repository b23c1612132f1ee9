"""Data: the common sample type and shards (``sample``), the synthetic renderer (``render``) and
scene sampler (``synth``). Modules import moderngl/torch lazily where they need them."""
