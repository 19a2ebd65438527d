"""The source studies, measured on this machine beside their own figures: one module per study.

seeds: the tables of the benchmarking slides (LArTPC CNNs, edge networks, scans).
"""
