"""Shared test configuration: nothing here touches the network."""
