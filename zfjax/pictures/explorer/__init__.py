"""The unit explorer: every unit of chosen layers of a network, browsable in one static page.

``build(net, stats, images, workdir)`` writes, from the statistics of one dataset scan (`zfjax.analyses.unit_scan`)::

    <workdir>/index.html               the page; it names one asset folder, and nothing else
    <workdir>/site-<id>/explorer.js    the page's script and style (`static/` here)
    <workdir>/site-<id>/explorer.css
    <workdir>/site-<id>/data/site.js   the layers, class names, dataset size: EXPLORER.site({...})
    <workdir>/site-<id>/data/<n>_<layer>.js         one record per unit: EXPLORER.layer({...})
    <workdir>/site-<id>/sprites/<n>_<layer>_<j>.png  unit sheets: a row of tiles per unit
    <workdir>/site-<id>/sprites/<n>_<layer>_overview.png  every unit's strongest projection

A unit's row holds its top-k deconvnet projections, the k image patches they see (Fig. 2 of the paper), and the
guided-backprop and saliency projections of its top image; its record holds the activations' values, images,
labels, positions and tile windows, its mean activation, how often it fires, and the classes of its strongest
activations (`records`). The page loads a layer's data and sheets when the layer is opened, so a few files per
layer serve thousands of units; data files are scripts, so the page works from disk (``file://``) as well as from
any static host.
"""
from zfjax.pictures.explorer import records
from zfjax.pictures.explorer.site import build, check_workdir, GAP, Images, Layer, plan, read_data, Site, unit_rows

__all__ = ["records", "GAP", "Images", "Layer", "Site", "build", "check_workdir", "plan", "read_data",
           "unit_rows"]
