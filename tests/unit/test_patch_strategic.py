"""Strategic merge patch: upstream apimachinery cases on a synthetic schema, then real Kubernetes kinds."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from corral.api.schema import SchemaIndex, SchemaNode, schema_index
from corral.apiserver.patch import PatchError
from corral.apiserver.patch.strategic import apply_strategic_merge_patch

# The MergeItem test type of apimachinery's strategicpatch tests, as a JSON schema.
_MERGE_ITEM_DEFS: dict[str, Any] = {
    "MergeItem": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "other": {"type": "string"},
            "mergingList": {
                "type": "array",
                "items": {"$ref": "#/$defs/MergeItem"},
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
            },
            "nonMergingList": {"type": "array", "items": {"$ref": "#/$defs/MergeItem"}},
            "mergingIntList": {
                "type": "array",
                "items": {"type": "integer"},
                "x-kubernetes-patch-strategy": "merge",
            },
            "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
            "mergeItemPtr": {
                "type": "array",
                "items": {"$ref": "#/$defs/MergeItem"},
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
            },
            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
            "replacingItem": {"type": "object", "x-kubernetes-patch-strategy": "replace"},
            "retainKeysMap": {
                "$ref": "#/$defs/RetainKeysMergeItem",
                "x-kubernetes-patch-strategy": "retainKeys",
            },
            "retainKeysMergingList": {
                "type": "array",
                "items": {"$ref": "#/$defs/MergeItem"},
                "x-kubernetes-patch-strategy": "merge,retainKeys",
                "x-kubernetes-patch-merge-key": "name",
            },
        },
    },
    "RetainKeysMergeItem": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "other": {"type": "string"},
            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
            "mergingIntList": {
                "type": "array",
                "items": {"type": "integer"},
                "x-kubernetes-patch-strategy": "merge",
            },
            "mergingList": {
                "type": "array",
                "items": {"$ref": "#/$defs/MergeItem"},
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
            },
            "nonMergingList": {"type": "array", "items": {"$ref": "#/$defs/MergeItem"}},
        },
    },
}

MERGE_ITEM = SchemaIndex(_MERGE_ITEM_DEFS).node("MergeItem")

# (description, current, patch, expected result) — from apimachinery's patch_test.go (the "current +
# three-way patch = result" and "custom" tables), in YAML as upstream writes them.
UPSTREAM_CASES = yaml.safe_load(
    """
- - unique scalars when merging lists
  - {mergingIntList: [1, 2]}
  - {mergingIntList: [2, 3]}
  - {mergingIntList: [1, 2, 3]}
- - delete map from nested map
  - {simpleMap: {key1: "1", key2: "1"}}
  - {simpleMap: {$patch: delete}}
  - {simpleMap: {}}
- - delete all items from merging list
  - {mergingList: [{name: "1"}, {name: "2"}]}
  - {mergingList: [{$patch: replace}]}
  - {mergingList: []}
- - merge empty merging lists
  - {mergingList: []}
  - {mergingList: []}
  - {mergingList: []}
- - delete all keys from map
  - {name: "1", value: "1"}
  - {$patch: replace}
  - {}
- - add key and delete all keys from map
  - {name: "1", value: "1"}
  - {other: a, $patch: replace}
  - {other: a}
- - delete all duplicate entries in a merging list
  - {mergingList: [{name: "1"}, {name: "1"}, {name: "2", value: a}, {name: "3"}, {name: "3"}]}
  - {mergingList: [{name: "1", $patch: delete}, {name: "3", $patch: delete}]}
  - {mergingList: [{name: "2", value: a}]}
- - retainKeys map can add a field when no retainKeys directive present
  - {retainKeysMap: {name: foo}}
  - {retainKeysMap: {value: bar}}
  - {retainKeysMap: {name: foo, value: bar}}
- - retainKeys map can delete a field when no retainKeys directive present
  - {retainKeysMap: {name: foo, value: a}}
  - {retainKeysMap: {value: null}}
  - {retainKeysMap: {name: foo}}
- - retainKeys list can change a field when no retainKeys directive present
  - {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]}
  - {retainKeysMergingList: [{name: foo, value: b}]}
  - {retainKeysMergingList: [{name: bar}, {name: foo, value: b}]}
- - preserve the order from the patch in a merging list
  - {mergingList: [{name: "1"}, {name: "2", value: b}, {name: "3"}]}
  - {mergingList: [{name: "3", value: c}, {name: "1", value: a}, {name: "2", other: x}]}
  - {mergingList: [{name: "3", value: c}, {name: "1", value: a}, {name: "2", value: b, other: x}]}
- - preserve the order from the patch in a merging list 2
  - {mergingList: [{name: "1"}, {name: "2", value: b}, {name: "3"}]}
  - {mergingList: [{name: "3", value: c}, {name: "1", value: a}]}
  - {mergingList: [{name: "2", value: b}, {name: "3", value: c}, {name: "1", value: a}]}
- - preserve the order from the patch in a merging int list
  - {mergingIntList: [1, 2, 3]}
  - {mergingIntList: [3, 1, 2]}
  - {mergingIntList: [3, 1, 2]}
- - preserve the order from the patch in a merging int list 2
  - {mergingIntList: [1, 2, 3]}
  - {mergingIntList: [3, 1]}
  - {mergingIntList: [2, 3, 1]}
- - $setElementOrder contains item that is not present in the list to be merged
  - {mergingList: [{name: "1"}, {name: "3"}]}
  - $setElementOrder/mergingList: [{name: "3"}, {name: "2"}, {name: "1"}]
    mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]
  - {mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]}
- - $setElementOrder contains item that is not present in the int list to be merged
  - {mergingIntList: [1, 3]}
  - {$setElementOrder/mergingIntList: [3, 2, 1]}
  - {mergingIntList: [3, 1]}
- - $deleteFromPrimitiveList of nonexistent item should not add the item to the list
  - {mergingIntList: [1, 2]}
  - {$deleteFromPrimitiveList/mergingIntList: [3]}
  - {mergingIntList: [1, 2]}
- - $deleteFromPrimitiveList on nonexistent primitive list should not add the list
  - {foo: [bar]}
  - {$deleteFromPrimitiveList/mergingIntList: [3]}
  - {foo: [bar]}
- - $deleteFromPrimitiveList should delete item from a list without merge patch strategy
  - {nonMergingIntList: [1, 2, 3]}
  - {$deleteFromPrimitiveList/nonMergingIntList: [2]}
  - {nonMergingIntList: [1, 3]}
- - nil original
  - {name: "1", other: a}
  - {value: "1"}
  - {name: "1", value: "1", other: a}
- - add field and delete field from map
  - {name: "1", other: a}
  - {name: null, value: "1"}
  - {value: "1", other: a}
- - delete field from nested map
  - {simpleMap: {key1: "1", key2: "1", other: a}}
  - {simpleMap: {key2: null}}
  - {simpleMap: {key1: "1", other: a}}
- - replace list of scalars
  - {nonMergingIntList: [1, 4]}
  - {nonMergingIntList: [2, 3]}
  - {nonMergingIntList: [2, 3]}
- - delete all maps from merging list with conflict
  - {mergingList: [{name: "1", other: a}, {name: "2", other: b}]}
  - {mergingList: [{name: "1", $patch: delete}, {name: "2", $patch: delete}]}
  - {mergingList: []}
- - delete all maps from empty merging list
  - {mergingList: []}
  - {mergingList: [{name: "1", $patch: delete}, {name: "2", $patch: delete}]}
  - {mergingList: []}
- - defined null values should propagate overwrite current fields
  - {name: a, other: a}
  - {name: "1", value: "1", other: null}
  - {name: "1", value: "1"}
- - nested patch merge with empty list
  - {name: hi, mergingList: [{name: hello2}]}
  - $setElementOrder/mergingList: [{name: hello}, {name: doesntexist}]
    mergingList: [{name: hello}, {$patch: delete, name: doesntexist}]
  - {name: hi, mergingList: [{name: hello}, {name: hello2}]}
- - delete items in lists of scalars
  - {mergingIntList: [1, 2, 3, 4]}
  - {$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}
  - {mergingIntList: [1, 2, 4]}
- - delete all duplicate items in lists of scalars
  - {mergingIntList: [1, 2, 3, 3, 4]}
  - {$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}
  - {mergingIntList: [1, 2, 4]}
- - add and delete items in lists of scalars
  - {mergingIntList: [1, 2, 3, 4]}
  - {$setElementOrder/mergingIntList: [1, 2, 4], $deleteFromPrimitiveList/mergingIntList: [3]}
  - {mergingIntList: [1, 2, 4]}
- - merge lists of maps
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "4"}, {name: "1"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "4", value: "4"}, {name: "3", value: "3"}]
  - mergingList:
    - {name: "4", value: "4"}
    - {name: "1", other: a}
    - {name: "2", value: "2", other: b}
    - {name: "3", value: "3"}
- - merge lists of maps with conflict
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "3", other: b}]}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "2", value: "2"}, {name: "3", value: "3"}]
  - mergingList:
    - {name: "1", other: a}
    - {name: "2", value: "2", other: b}
    - {name: "3", value: "3"}
- - add field to map in merging list with conflict
  - {mergingList: [{name: "1", other: a}, {name: "3", value: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
    mergingList: [{name: "1", value: "1"}, {name: "2", value: "2"}]
  - mergingList:
    - {name: "1", value: "1", other: a}
    - {name: "2", value: "2"}
    - {name: "3", value: "2", other: b}
- - delete map from merging list
  - {mergingList: [{name: "1"}, {name: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "2"}]
    mergingList: [{name: "1", $patch: delete}]
  - {mergingList: [{name: "2", other: b}]}
- - delete missing map from merging list with conflict
  - {mergingList: [{name: "3", other: a}]}
  - $setElementOrder/mergingList: [{name: "2"}]
    mergingList: [{name: "2"}, {name: "1", $patch: delete}]
  - {mergingList: [{name: "2"}, {name: "3", other: a}]}
- - add map and delete map from merging list
  - {mergingList: [{name: "1"}, {name: "2", other: b}, {name: "4", other: c}]}
  - $setElementOrder/mergingList: [{name: "2"}, {name: "3"}]
    mergingList: [{name: "3"}, {name: "1", $patch: delete}]
  - {mergingList: [{name: "2", other: b}, {name: "4", other: c}, {name: "3"}]}
- - add map and delete map from merging list with conflict
  - {mergingList: [{name: "1", other: a}, {name: "4", other: c}]}
  - $setElementOrder/mergingList: [{name: "2"}, {name: "3"}]
    mergingList: [{name: "2"}, {name: "3"}, {name: "1", $patch: delete}]
  - {mergingList: [{name: "4", other: c}, {name: "2"}, {name: "3"}]}
- - delete field from map in merging list
  - {mergingList: [{name: "1", value: "1", other: a}, {name: "2", value: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
    mergingList: [{name: "1", value: null}]
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}]}
- - replace non merging list nested in merging list
  - mergingList:
    - {name: "1", other: a, nonMergingList: [{name: "1"}, {name: "2", value: "2"}]}
    - {name: "2", other: b}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
    mergingList: [{name: "1", nonMergingList: [{name: "1", value: "1"}]}]
  - mergingList:
    - {name: "1", other: a, nonMergingList: [{name: "1", value: "1"}]}
    - {name: "2", other: b}
- - add field to map in merging list nested in merging list
  - mergingList:
    - {name: "1", other: a, mergingList: [{name: "1"}, {name: "2", value: "2"}]}
    - {name: "2", other: b}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
    mergingList:
    - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
      name: "1"
      mergingList: [{name: "1", value: "1"}]
  - mergingList:
    - {name: "1", other: a, mergingList: [{name: "1", value: "1"}, {name: "2", value: "2"}]}
    - {name: "2", other: b}
- - nested set element order with deletion conflict
  - mergingList:
    - {name: "1", other: a, mergingList: [{name: "2", value: "2", other: d}]}
    - {name: "2", other: b}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}]
    mergingList:
    - $setElementOrder/mergingList: [{name: "2"}, {name: "1"}]
      name: "1"
      mergingList: [{name: "1", value: "1"}]
  - mergingList:
    - {name: "1", other: a, mergingList: [{name: "2", value: "2", other: d}, {name: "1", value: "1"}]}
    - {name: "2", other: b}
- - add map to merging list by pointer
  - {mergeItemPtr: [{name: "1", other: a}, {name: "3"}]}
  - $setElementOrder/mergeItemPtr: [{name: "1"}, {name: "2"}]
    mergeItemPtr: [{name: "2"}]
  - {mergeItemPtr: [{name: "1", other: a}, {name: "2"}, {name: "3"}]}
- - merge lists of scalars
  - {mergingIntList: [1, 2, 4]}
  - {$setElementOrder/mergingIntList: [1, 2, 3], mergingIntList: [3]}
  - {mergingIntList: [1, 2, 3, 4]}
- - add an item in a list of primitives and preserve order
  - {mergingIntList: [1, 4, 2]}
  - {$setElementOrder/mergingIntList: [3, 1, 2], mergingIntList: [3]}
  - {mergingIntList: [3, 1, 4, 2]}
- - delete an item in a list of primitives and preserve order
  - {mergingIntList: [1, 2, 3]}
  - {$setElementOrder/mergingIntList: [2, 1], $deleteFromPrimitiveList/mergingIntList: [3]}
  - {mergingIntList: [2, 1]}
- - add an item in a list and preserve order
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "3"}, {name: "1"}, {name: "2"}]
    mergingList: [{name: "3", value: "3"}]
  - mergingList:
    - {name: "3", value: "3"}
    - {name: "1", other: a}
    - {name: "2", value: "2", other: b}
- - add multiple items in a list and preserve order
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}]}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "4"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "4", value: "4"}, {name: "3", value: "3"}]
  - mergingList:
    - {name: "1", other: a}
    - {name: "4", value: "4"}
    - {name: "2", value: "2", other: b}
    - {name: "3", value: "3"}
- - delete an item in a list and preserve order
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}, {name: "3", value: "3"}]}
  - $setElementOrder/mergingList: [{name: "2"}, {name: "1"}]
    mergingList: [{name: "3", $patch: delete}]
  - {mergingList: [{name: "2", value: "2", other: b}, {name: "1", other: a}]}
- - add and delete an item in a list and preserve order
  - {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}, {name: "3", value: "3"}]}
  - $setElementOrder/mergingList: [{name: "4"}, {name: "2"}, {name: "1"}]
    mergingList: [{name: "4", value: "4"}, {name: "3", $patch: delete}]
  - {mergingList: [{name: "4", value: "4"}, {name: "2", value: "2", other: b}, {name: "1", other: a}]}
- - set elements order in a list with server-only items
  - {mergingList: [{name: "1", other: a}, {name: "3"}, {name: "4"}, {name: "2"}, {name: "9"}]}
  - {$setElementOrder/mergingList: [{name: "4"}, {name: "2"}, {name: "3"}, {name: "1"}]}
  - {mergingList: [{name: "4"}, {name: "2"}, {name: "3"}, {name: "1", other: a}, {name: "9"}]}
- - set elements order in a list with server-only items 2
  - {mergingList: [{name: "1"}, {name: "2"}, {name: "9"}, {name: "3"}, {name: "4"}]}
  - {$setElementOrder/mergingList: [{name: "2"}, {name: "1"}, {name: "4"}, {name: "3"}]}
  - {mergingList: [{name: "2"}, {name: "1"}, {name: "9"}, {name: "4"}, {name: "3"}]}
- - set elements order in a list with server-only items 3
  - {mergingList: [{name: "1"}, {name: "2"}, {name: "7"}, {name: "9"}, {name: "8"}, {name: "3"}, {name: "4"}]}
  - {$setElementOrder/mergingList: [{name: "2"}, {name: "1"}, {name: "4"}, {name: "3"}]}
  - mergingList: [{name: "2"}, {name: "1"}, {name: "7"}, {name: "9"}, {name: "8"}, {name: "4"}, {name: "3"}]
- - set elements order in a int list with server-only items 3
  - {mergingIntList: [1, 2, 7, 9, 8, 3, 4]}
  - {$setElementOrder/mergingIntList: [2, 1, 4, 3]}
  - {mergingIntList: [2, 1, 7, 9, 8, 4, 3]}
- - add and delete an item in a int list and preserve order
  - {mergingIntList: [1, 2, 3]}
  - $setElementOrder/mergingIntList: [4, 2, 1]
    mergingIntList: [4]
    $deleteFromPrimitiveList/mergingIntList: [3]
  - {mergingIntList: [4, 2, 1]}
- - behavior of set element order for a merging list with duplicate
  - {mergingList: [{name: "1"}, {name: "2", value: dup1}, {name: "3"}, {name: "2", value: dup2}, {name: "4"}]}
  - $setElementOrder/mergingList: [{name: "2"}, {name: "1"}, {name: "4"}, {name: "3"}, {name: "2"}]
  - mergingList:
    - {name: "2", value: dup1}
    - {name: "2", value: dup2}
    - {name: "1"}
    - {name: "4"}
    - {name: "3"}
- - behavior of set element order for a merging int list with duplicate
  - {mergingIntList: [1, 2, 3, 2, 4]}
  - {$setElementOrder/mergingIntList: [2, 1, 4, 3, 2]}
  - {mergingIntList: [2, 2, 1, 4, 3]}
- - retainKeys map should clear defaulted field
  - {retainKeysMap: {value: foo}}
  - {retainKeysMap: {$retainKeys: [other], other: bar}}
  - {retainKeysMap: {other: bar}}
- - retainKeys map should clear defaulted field with conflict (discriminated union)
  - {retainKeysMap: {name: type1, value: foo}}
  - {retainKeysMap: {$retainKeys: [name, other], name: type2, other: bar}}
  - {retainKeysMap: {name: type2, other: bar}}
- - retainKeys map adds a field and clear a field
  - {retainKeysMap: {name: foo, other: a}}
  - {retainKeysMap: {$retainKeys: [name, value], value: bar}}
  - {retainKeysMap: {name: foo, value: bar}}
- - retainKeys map deletes a field and clears a field
  - {retainKeysMap: {name: foo, value: bar, other: a}}
  - {retainKeysMap: {$retainKeys: [name], value: null}}
  - {retainKeysMap: {name: foo}}
- - retainKeys map clears a field
  - {retainKeysMap: {name: foo, value: bar, other: a}}
  - {retainKeysMap: {$retainKeys: [name, value]}}
  - {retainKeysMap: {name: foo, value: bar}}
- - retainKeys map adds a field in a nested map
  - {retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key3: c}}}
  - {retainKeysMap: {$retainKeys: [name, simpleMap, value], simpleMap: {key2: b}}}
  - {retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key2: b, key3: c}}}
- - retainKeys map deletes a field in a nested map
  - {retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key2: b, key3: c}}}
  - {retainKeysMap: {$retainKeys: [name, simpleMap, value], simpleMap: {key2: null}}}
  - {retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key3: c}}}
- - retainKeys in elements of a merge list
  - {retainKeysMergingList: [{name: a, value: "1", other: x}, {name: b, other: y}]}
  - {retainKeysMergingList: [{name: a, $retainKeys: [name, value], value: "2"}]}
  - {retainKeysMergingList: [{name: a, value: "2"}, {name: b, other: y}]}
- - patch strategy replace replaces a map
  - {replacingItem: {a: "1", b: "2"}}
  - {replacingItem: {c: "3"}}
  - {replacingItem: {c: "3"}}
"""
)


@pytest.mark.parametrize(
    ("current", "patch", "expected"),
    [pytest.param(c, p, r, id=d) for d, c, p, r in UPSTREAM_CASES],
)
def test_upstream_cases(current: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert apply_strategic_merge_patch(current, patch, MERGE_ITEM) == expected


UPSTREAM_ERRORS = yaml.safe_load(
    """
- - should check if order in $setElementOrder and patch list match
  - {mergingList: [{name: "1"}, {name: "3"}, {name: "2"}]}
  - $setElementOrder/mergingList: [{name: "1"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]
  - doesn't match
- - should check if order in $setElementOrder and patch int list match
  - {mergingIntList: [1, 3, 2]}
  - {$setElementOrder/mergingIntList: [1, 2, 3], mergingIntList: [3, 1]}
  - doesn't match
- - missing merge key should error out
  - {mergingList: [{name: "1", value: a}]}
  - {mergingList: [{value: b}]}
  - merge key
- - delete directive without merge key
  - {mergingList: [{name: "1"}]}
  - {mergingList: [{$patch: delete, value: b}]}
  - merge key
- - unknown map directive
  - {simpleMap: {a: b}}
  - {simpleMap: {$patch: explode}}
  - unknown patch directive
- - unknown list directive
  - {mergingList: [{name: "1"}]}
  - {mergingList: [{name: "1", $patch: explode}]}
  - unknown patch directive
- - retainKeys must list the fields the patch sets
  - {retainKeysMap: {name: foo}}
  - {retainKeysMap: {$retainKeys: [name], value: bar}}
  - $retainKeys
- - retainKeys must be a list
  - {retainKeysMap: {name: foo}}
  - {retainKeysMap: {$retainKeys: name}}
  - $retainKeys
- - setElementOrder must be a list
  - {mergingList: [{name: "1"}]}
  - {$setElementOrder/mergingList: {name: "1"}}
  - must be a list
- - directive key without a field
  - {mergingIntList: [1]}
  - {$setElementOrder: [1]}
  - invalid directive key
- - mixed element types
  - {mergingIntList: [1, 2]}
  - {mergingIntList: [{name: x}]}
  - not all objects
- - lists of lists
  - {mergingIntList: [[1]]}
  - {mergingIntList: [[2]]}
  - lists of lists
- - delete from primitive list of objects
  - {nonMergingList: [{name: "1"}]}
  - {$deleteFromPrimitiveList/nonMergingList: [{name: "1"}]}
  - lists of primitives
"""
)


@pytest.mark.parametrize(
    ("current", "patch", "message"),
    [pytest.param(c, p, m, id=d) for d, c, p, m in UPSTREAM_ERRORS],
)
def test_upstream_errors(current: dict[str, Any], patch: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError, match=_escape(message)):
        apply_strategic_merge_patch(current, patch, MERGE_ITEM)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_patch_must_be_an_object() -> None:
    with pytest.raises(PatchError, match="JSON object"):
        apply_strategic_merge_patch({}, [{"op": "add"}], MERGE_ITEM)


# --- real kinds ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.apps.v1.Deployment")


@pytest.fixture(scope="module")
def service_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.core.v1.Service")


@pytest.fixture(scope="module")
def pod_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.core.v1.Pod")


@pytest.fixture(scope="module")
def configmap_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.core.v1.ConfigMap")


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "finalizers": ["example.com/a"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
    }


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


def test_kubectl_apply_patch_changes_only_that_container(deployment_node: SchemaNode) -> None:
    live = _deployment()
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"x":1}\n'}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"image": "nginx:1.26", "name": "nginx"}],
                }
            }
        },
    }
    result = apply_strategic_merge_patch(live, patch, deployment_node)
    expected = _deployment()
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = '{"x":1}\n'
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert result == expected
    assert "$setElementOrder/containers" not in result["spec"]["template"]["spec"]


def test_kubectl_set_image_and_env(deployment_node: SchemaNode) -> None:
    patch: dict[str, Any] = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "name": "nginx",
                            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                            "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "one"}],
                        }
                    ],
                }
            }
        }
    }
    # the patch list order must follow $setElementOrder: A before C
    with pytest.raises(PatchError, match="doesn't match"):
        apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    patch["spec"]["template"]["spec"]["containers"][0]["env"].reverse()
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert _containers(result)[0]["env"] == [
        {"name": "A", "value": "one"},
        {"name": "B", "value": "2"},
        {"name": "C", "value": "3"},
    ]
    assert _containers(result)[1] == _containers(_deployment())[1]


def test_rollout_restart_adds_template_annotation(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"},
    }


def test_container_added_without_order_goes_first_like_upstream(deployment_node: SchemaNode) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "extra", "image": "redis:7"}]}}}}
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert [c["name"] for c in _containers(result)] == ["extra", "nginx", "sidecar"]


def test_delete_container_and_env_entry(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "$patch": "delete"},
                        {"name": "nginx", "env": [{"name": "A", "$patch": "delete"}]},
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert [c["name"] for c in _containers(result)] == ["nginx"]
    assert _containers(result)[0]["env"] == [{"name": "B", "value": "2"}]


def test_replace_list_directive(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert _containers(result) == [{"name": "only", "image": "x"}]


def test_replace_map_directive(deployment_node: SchemaNode) -> None:
    patch = {"metadata": {"labels": {"$patch": "replace", "tier": "fe"}}}
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["metadata"]["labels"] == {"tier": "fe"}


def test_delete_map_directive(deployment_node: SchemaNode) -> None:
    result = apply_strategic_merge_patch(
        _deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, deployment_node
    )
    assert result["spec"]["strategy"] == {}
    # on a key the target lacks, a deleted map does not appear at all
    result = apply_strategic_merge_patch(
        _deployment(),
        {
            "spec": {
                "paused": None,
                "revisionHistoryLimit": None,
                "minReadySeconds": 5,
                "progressDeadlineSeconds": {"$patch": "delete"},
            }
        },
        deployment_node,
    )
    assert "progressDeadlineSeconds" not in result["spec"]
    assert result["spec"]["minReadySeconds"] == 5


def test_merge_directive_is_the_default(deployment_node: SchemaNode) -> None:
    patch = {
        "metadata": {"labels": {"$patch": "merge", "tier": "fe"}},
        "spec": {
            "template": {"spec": {"containers": [{"$patch": "merge", "name": "nginx", "image": "n:2"}]}}
        },
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert _containers(result)[0]["image"] == "n:2"
    assert _containers(result)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_retain_keys_on_deployment_strategy(deployment_node: SchemaNode) -> None:
    # what kubectl apply sends when switching RollingUpdate -> Recreate
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_on_volumes(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list(deployment_node: SchemaNode) -> None:
    result = apply_strategic_merge_patch(
        _deployment(), {"metadata": {"finalizers": ["example.com/b", "example.com/a"]}}, deployment_node
    )
    assert result["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]
    result = apply_strategic_merge_patch(
        _deployment(),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}},
        deployment_node,
    )
    assert result["metadata"]["finalizers"] == []


def test_non_merge_lists_are_replaced(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "tolerations": [{"key": "b", "operator": "Exists", "value": None}],
                    "containers": [{"name": "sidecar", "args": ["sleep", "1"]}],
                }
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert _containers(result)[1]["args"] == ["sleep", "1"]


def test_container_ports_merge_by_container_port(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                        }
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert _containers(result)[0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 443},
    ]


def test_volume_mounts_merge_by_mount_path(deployment_node: SchemaNode) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "nginx", "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(_deployment(), patch, deployment_node)
    assert _containers(result)[0]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data", "readOnly": True}
    ]


def test_service_ports_merge_by_port(service_node: SchemaNode) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "targetPort": 8443}],
            "type": "ClusterIP",
        },
    }
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"tier": "fe"}}}
    result = apply_strategic_merge_patch(live, patch, service_node)
    assert result["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 443, "targetPort": 8443},
    ]
    # ServiceSpec.selector is a map: merged key by key
    assert result["spec"]["selector"] == {"app": "web", "tier": "fe"}


def test_pod_conditions_merge_by_type(pod_node: SchemaNode) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            ],
        },
    }
    patch = {
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "reason": None}]}
    }
    result = apply_strategic_merge_patch(live, patch, pod_node)
    assert result["status"] == {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
    }


def test_cordon_on_node() -> None:
    node = schema_index().node("io.k8s.api.core.v1.Node")
    live = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": {}}
    result = apply_strategic_merge_patch(live, {"spec": {"unschedulable": True}}, node)
    assert result["spec"] == {"unschedulable": True}


def test_configmap_data_merges_key_by_key(configmap_node: SchemaNode) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"a": "1", "b": "2"},
    }
    result = apply_strategic_merge_patch(live, {"data": {"b": None, "c": "3"}}, configmap_node)
    assert result["data"] == {"a": "1", "c": "3"}


def test_unknown_subtree_falls_back_to_json_merge(deployment_node: SchemaNode) -> None:
    live = _deployment()
    live["spec"]["x-extra"] = {"list": [{"name": "a", "v": 1}], "keep": 1}
    patch = {"spec": {"x-extra": {"list": [{"name": "b"}], "new": {"n": None, "m": 1}}}}
    result = apply_strategic_merge_patch(live, patch, deployment_node)
    assert result["spec"]["x-extra"] == {"list": [{"name": "b"}], "keep": 1, "new": {"m": 1}}


def test_without_schema_node() -> None:
    result = apply_strategic_merge_patch({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": {"d": 2}}, None)
    assert result == {"a": [3], "b": {"c": 1, "d": 2}}


def test_directives_never_leak_into_new_fields(deployment_node: SchemaNode) -> None:
    live = _deployment()
    del live["spec"]["template"]["spec"]["volumes"]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/volumes": [{"name": "b"}, {"name": "a"}],
                    "volumes": [
                        {"name": "b", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}},
                        {"name": "a", "emptyDir": {}},
                        {"name": "c", "$patch": "delete"},
                    ],
                    "affinity": {"$patch": "replace", "nodeAffinity": {"x": None, "y": 1}},
                }
            }
        }
    }
    result = apply_strategic_merge_patch(live, patch, deployment_node)
    spec = result["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "b", "secret": {"secretName": "s"}}, {"name": "a", "emptyDir": {}}]
    assert spec["affinity"] == {"nodeAffinity": {"y": 1}}
    assert "$" not in repr(result)


def test_inputs_are_not_mutated(deployment_node: SchemaNode) -> None:
    live = _deployment()
    patch = {
        "metadata": {"labels": {"$patch": "replace", "x": "y"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                    "containers": [{"name": "nginx", "env": [{"name": "A", "$patch": "delete"}]}],
                }
            },
        },
    }
    live_before, patch_before = copy.deepcopy(live), copy.deepcopy(patch)
    result = apply_strategic_merge_patch(live, patch, deployment_node)
    assert live == live_before
    assert patch == patch_before
    result["spec"]["template"]["spec"]["containers"][1]["ports"].append({"containerPort": 1})
    assert live == live_before
