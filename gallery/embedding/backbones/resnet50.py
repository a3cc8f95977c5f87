"""ResNet50: 2048-wide vectors, average-pooled after the last residual stage, 224 x 224 input."""

from typing import Any

from gallery.embedding.backbones.keras_app import KerasBackbone


class ResNet50(KerasBackbone):
    name = "resnet50"
    label = "ResNet50"
    application = "ResNet50"
    dim = 2048
    input_size = 224
    pipeline_id = "resnet50-avgpool-l2/caffe-224-squash-bilinear"
    weights_setting = "IMAGESEARCH_RESNET50_WEIGHTS"
    weights_file_hint = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def preprocess(self, batch: Any) -> Any:
        import keras

        return keras.applications.resnet50.preprocess_input(batch)  # caffe mode: BGR, ImageNet means subtracted
