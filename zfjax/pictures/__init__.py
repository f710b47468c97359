"""Pictures and pages: units' projections and patches cut to tiles (`tiles`), matplotlib figures (`plots`), the
experiments' ``index.html`` pages (`pages`), sprite sheets (`sprites`) and the unit explorer (`explorer`)."""
