"""The paper's analyses, on any `zfjax.network.Network`: the top-k scan (Fig. 2), occlusion (Fig. 7), invariance
(Fig. 5), correspondence (Table 1), the filters' frequency content (Fig. 6), the statistics of every unit (the
explorer), and the features and linear classifiers of the transfer experiments (Tables 4-7). Each returns arrays;
drawing them is `zfjax.pictures`'."""
