"""The mutating admission webhook: annotated pods get the injector's containers and volumes.

``annotations`` reads a pod's ``injector.tmpfs.dev/`` annotations (over the webhook's defaults) into
the same config the YAML file would be, validated by the same parser; ``patch`` builds the mutated
pod and the JSONPatch; ``admission`` turns an AdmissionReview into its answer; ``server`` serves it
over HTTPS with certificate reload, probes and metrics.
"""
