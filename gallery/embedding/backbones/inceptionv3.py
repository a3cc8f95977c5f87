"""InceptionV3: 2048-wide vectors, average-pooled after the last mixed block, 299 x 299 input."""

from typing import Any

from gallery.embedding.backbones.keras_app import KerasBackbone


class InceptionV3(KerasBackbone):
    name = "inceptionv3"
    label = "InceptionV3"
    application = "InceptionV3"
    dim = 2048
    input_size = 299
    pipeline_id = "inceptionv3-avgpool-l2/tf-299-squash-bilinear"
    weights_setting = "IMAGESEARCH_INCEPTIONV3_WEIGHTS"
    weights_file_hint = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def preprocess(self, batch: Any) -> Any:
        import keras

        return keras.applications.inception_v3.preprocess_input(batch)  # tf mode: 0..255 -> -1..1
