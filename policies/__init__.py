"""Ready-made policies (`*.risk`) with their tests (`tests/*.yaml`), shipped as package data so an
installed riskc has them too: the embedded demo of `riskc run` enforces `topstep-50k.risk`."""
