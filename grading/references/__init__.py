"""Reference answers that live with the course, never in the student wheel.

gmmlib (which students install) holds the Gaussian mixture's EM; an assignment whose answer is
not in gmmlib keeps its reference here, beside the checks that grade against it.
"""
