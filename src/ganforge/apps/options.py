"""The choices and defaults of image completion, in a module that imports nothing, so that the
command line offers them (``ganforge inpaint --help``) without loading torch. The modules that use
them import them from here: :mod:`ganforge.apps.inpaint` (methods), :mod:`ganforge.apps.blend`
(blends) and :mod:`ganforge.apps.latent` (the latent search)."""

METHODS = ("auto", "latent", "network")  # how a model completes: auto = what the run was trained for
BLENDS = ("poisson", "feather", "none")  # how a fill meets the known pixels

# latent optimisation (Yeh et al. 2017)
DEFAULT_STEPS = 500
DEFAULT_RESTARTS = 8
DEFAULT_LR = 0.05
DEFAULT_PRIOR = 0.003  # lambda of Yeh et al. 2017
DEFAULT_WINDOW = 7  # neighbourhood of the contextual weights (Yeh et al. 2017 use 7)

# folder mode: images completed together (one latent search or network pass per batch); 8 images x 8
# restarts = 64 latents per step ran fastest on a CPU (larger batches spill its caches): raise it on a GPU
DEFAULT_BATCH = 8
