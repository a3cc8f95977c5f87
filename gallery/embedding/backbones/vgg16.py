"""VGG16, the default backbone.

VGG16 without its classifier, global average pooling over the last conv block,
giving a (512,) float32 vector per image, L2-normalised so cosine similarity is
a dot product. The model loads lazily, once per process, on first use (see
keras_app.KerasBackbone, which builds and compiles every Keras backbone).
"""

from typing import Any

from gallery.embedding.backbones.keras_app import KerasBackbone, batch_shapes

__all__ = ["VGG16", "batch_shapes"]


class VGG16(KerasBackbone):
    name = "vgg16"
    label = "VGG16"
    application = "VGG16"
    dim = 512
    input_size = 224
    # Unchanged since the first release: existing vectors stay valid.
    pipeline_id = "vgg16-avgpool-l2/caffe-224-squash-bilinear"
    weights_setting = "IMAGESEARCH_VGG16_WEIGHTS"
    weights_file_hint = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

    def preprocess(self, batch: Any) -> Any:
        import keras

        return keras.applications.vgg16.preprocess_input(batch)  # RGB 0..255 -> BGR, ImageNet means subtracted
