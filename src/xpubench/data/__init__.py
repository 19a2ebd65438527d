"""Datasets: labelled inputs for accuracy and calibration."""
