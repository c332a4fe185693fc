"""Typing: the views are generic at runtime; the stubs type-check a sample with mypy."""
import types
import unittest

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet


class RuntimeGenerics(unittest.TestCase):
    def test_views_can_be_subscripted(self):
        for alias, origin, args in ((FrozenDict[str, int], FrozenDict, (str, int)),
                                    (FrozenList[str], FrozenList, (str,)),
                                    (FrozenSet[int], FrozenSet, (int,))):
            with self.subTest(alias=alias):
                self.assertIsInstance(alias, types.GenericAlias)
                self.assertIs(alias.__origin__, origin)
                self.assertEqual(alias.__args__, args)

    def test_annotations_evaluate(self):
        def lookup(table: FrozenDict[str, FrozenList[int]], key: str) -> int:
            return table[key][0]

        self.assertEqual(lookup(permafrost.freeze({"k": [7]}), "k"), 7)
        self.assertEqual(lookup.__annotations__["table"], FrozenDict[str, FrozenList[int]])


if __name__ == "__main__":
    unittest.main()
