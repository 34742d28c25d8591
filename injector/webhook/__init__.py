"""The mutating admission webhook: annotated pods get the injector's containers and volumes.

``keys`` names the ``injector.tmpfs.dev/`` annotations and reads one pod's (over the ``--defaults``
file); ``to_config`` compiles them into the config mapping a YAML file would be and checks it with
the same parser and validator; ``annotations`` makes the pod's ``Plan``; ``patch`` builds the
mutated pod and the JSONPatch; ``admission`` turns an AdmissionReview into its answer; ``server``
serves it over HTTPS with certificate reload, probes and metrics.
"""
