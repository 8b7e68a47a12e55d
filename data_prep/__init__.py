"""Kinetics preparation: official CSVs + raw clips -> resized, verified videos and CSV lists."""
