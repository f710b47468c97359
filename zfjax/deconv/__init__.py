"""The deconvnet (paper section 3): project any activation back to pixels, by JAX's own machinery.

The rules are a transformation of any JAX function (`transform.apply_rule`): each ReLU's backward becomes the rule's
(`rules`), each max pool's backward unpools with its switches, every other operation keeps its own VJP (a conv's
is the transposed filters). `projection.project_fn` projects a unit of any function's feature map;
`builtin.project` does the same for the built-in networks with their fast paths; `reference.project_reference`
is the paper's description in code, for tests.

- `rules`: the three backward rules (deconvnet, guided, saliency), in one table.
- `program`: a traced function as a flat list of operations, with its ReLUs, pools and other activations found.
- `transform`: ``apply_rule`` and ``rule_sites``.
- `intervals`: which input positions a range of output positions reads, per operation (receptive fields).
- `cone`: a unit's backward pass through fixed-size windows that move with it (the cropped projection).
- `projection`: ``project_fn`` / ``project_many_fn`` for any function.
- `builtin`: ``project`` / ``project_many`` for the built-in `zfjax.network.models` nets.
- `reference`: the paper's layer-by-layer description (unpool, rectify, transposed filters).
- `units`: choosing a unit of a map (checks, the strongest unit, the seed).
"""
from zfjax.deconv.builtin import LCN_RULES, backward_ops, project, project_many, projectable_layers
from zfjax.deconv.builtin import Cone, Pooled, cone_stages, lcn_skipped_backward, saved_forward, stage_backward
from zfjax.deconv.reference import lcn_gradient, project_reference, rectify, transposed_filters, unpool
from zfjax.deconv.projection import project_fn, project_many_fn
from zfjax.deconv.rules import RULES
from zfjax.deconv.transform import apply_rule, rule_sites
from zfjax.deconv.units import Projections

__all__ = ["apply_rule", "rule_sites", "project_fn", "project_many_fn", "project", "project_many", "Projections",
           "RULES", "LCN_RULES", "backward_ops", "projectable_layers", "project_reference", "unpool", "rectify",
           "transposed_filters", "lcn_gradient", "lcn_skipped_backward", "Cone", "cone_stages", "saved_forward",
           "stage_backward", "Pooled"]
