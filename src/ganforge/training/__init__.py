"""Training machinery every task shares: the loop (:mod:`~ganforge.training.loop`), its parts
(:mod:`~ganforge.training.parts`: devices, batches, EMA, finiteness), the monitor (metric lines,
curves, TensorBoard), DiffAugment, the collapse watchdog and random masks. The tasks' trainers are
in :mod:`ganforge.tasks`."""
