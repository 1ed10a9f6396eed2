"""MixER reference model (Alehdaghi et al., "MixER: From Cross-Modal to Mixed-Modal
Visible-Infrared Re-Identification"): train, extract a feature dump, score it.

Modules (torch is imported only by ``model``, ``losses``, ``data``' torch parts, ``train``
and ``extract``, and only when they are used):

* ``config``: TOML configurations per dataset, overrides, config hash (no torch);
* ``index``: test/train image lists as DataFrames (path, pid, cam, modality) (no torch);
* ``data``: image-list dataset, identity-balanced sampler, augmentations;
* ``model``: backbone with shared and per-modality last stages -> z_e, z_r, z_f;
* ``losses``: eqs. 7, 9-15 of the paper and the gradient-reversal layer;
* ``train``: the training loop (checkpoints, resume, progress bar, CSV log);
* ``extract``: flip-averaged features -> a v1 feature dump;
* ``cli``: ``vireid-bench mixer train|extract``.

See docs/mixer.md for the paper facts followed and every choice where the paper is silent.
"""
