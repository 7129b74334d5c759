"""Layer insight: Grad-CAM explanations (`explain`) and the channels that vary most across
a collection (`channels`). Sits beside `learning`: it uses catalog, store, engine and
backbones, and nothing imports it but the service."""
