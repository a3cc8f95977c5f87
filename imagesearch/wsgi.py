import os

# A web process answers requests on several threads at once: a numpy product
# that also spreads over BLAS's own threads only makes them spin against each
# other. With BLAS free to, find similar cost 21.9 ms of CPU a request on 2
# cores; with one BLAS thread, 4.4 ms (bench/http.py, docs/benchmarks.md).
# Set before numpy loads (the WSGI module is the first a web worker imports);
# workers, which build indexes and run the model, keep their defaults.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
application = get_wsgi_application()
