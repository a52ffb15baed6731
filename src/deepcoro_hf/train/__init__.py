"""Training and evaluation entry points: `pretrain` (contrastive), `finetune` (segment heads), `evaluate` (tables)."""
