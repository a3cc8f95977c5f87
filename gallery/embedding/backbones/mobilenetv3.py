"""MobileNetV3 (Large): 960-wide vectors, average-pooled after the last conv, 224 x 224 input; the cheap one."""

from typing import Any

from gallery.embedding.backbones.keras_app import KerasBackbone


class MobileNetV3(KerasBackbone):
    name = "mobilenetv3"
    label = "MobileNetV3"
    application = "MobileNetV3Large"
    dim = 960
    input_size = 224
    pipeline_id = "mobilenetv3large-avgpool-l2/rescale-224-squash-bilinear"
    weights_setting = "IMAGESEARCH_MOBILENETV3_WEIGHTS"
    weights_file_hint = "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"

    def application_kwargs(self) -> dict[str, Any]:
        # The network's own Rescaling layer (0..255 -> -1..1) is its preprocessing,
        # which is why keras.applications.mobilenet_v3.preprocess_input is the identity.
        return {"include_preprocessing": True}

    def preprocess(self, batch: Any) -> Any:
        import keras

        return keras.applications.mobilenet_v3.preprocess_input(batch)  # identity: the model rescales
